/*
 * monitor.c: the full-screen link monitor, drawn with ncurses. ncurses
 * rather than hand-written ANSI sequences: it reads the terminal's
 * capabilities from terminfo, redraws only what changed, decodes keys,
 * reports resizes (KEY_RESIZE), and gives the terminal back intact
 * (endwin) however the program ends.
 */
#include "monitor.h"

#include <curses.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "agg/dump.h"
#include "agg/log.h"

/* Redraws per second. */
#define MONITOR_REFRESH_MS 250
/* Links remembered (shown or hidden), sessions shown. */
#define MONITOR_MAX_ROWS 256
#define MONITOR_MAX_SESSIONS 64
#define MONITOR_MAX_LINKS 64
/* Event lines kept, and shown at most. */
#define MONITOR_EVENTS 64
#define MONITOR_EVENTS_SHOWN 8
/* Columns of a link row up to the resends: transport, link, state,
 * since, RTT, send, receive, queued, unacked (104 columns in all). */
#define MONITOR_ROW_FMT \
	"%-5.5s %-30.30s %-10s %8s %7s %7s %7s %6s %7s "

enum monitor_state {
	MONITOR_CONNECTING,
	MONITOR_UP,
	MONITOR_STALLED,
	MONITOR_DOWN,
};

/* One link as last seen, kept after it left its session. */
struct monitor_row {
	char sid[33];
	char name[64];
	enum monitor_state state;
	char reason[128];
	uint64_t since_us;          /* monotonic */
	int present;                /* in its session at the last look */
	struct agg_link_stats st;
};

struct monitor_session {
	struct agg_session_stats st;
	size_t wanted;              /* links the owner dials (0: unknown) */
};

struct monitor {
	const struct monitor_callbacks *cbs;
	void *arg;
	char program[32];
	SCREEN *screen;
	struct event *timer, *input, *sigquit, *sighup;
	int show_all;
	struct monitor_row rows[MONITOR_MAX_ROWS];
	size_t nrows;
	struct monitor_session sessions[MONITOR_MAX_SESSIONS];
	size_t nsessions;
	struct monitor_slot slots[MONITOR_MAX_LINKS];
	char events[MONITOR_EVENTS][200];
	size_t nevents, next_event;
};

/* Whether stdout is a terminal we have in the foreground: a background
 * job (`agg-client ... &`) that set the terminal's modes would be stopped
 * by SIGTTOU before serving anything. */
int monitor_default(void)
{
	return isatty(STDOUT_FILENO) && tcgetpgrp(STDOUT_FILENO) == getpgrp();
}

/* Monotonic clock in microseconds. */
static uint64_t monitor_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Formats a monotonic time as the wall clock's HH:MM:SS. */
static void monitor_clock(uint64_t mono_us, char *out, size_t outlen)
{
	uint64_t now = monitor_now_us();
	time_t t = time(NULL) - (time_t)((now > mono_us ? now - mono_us : 0) /
	    1000000u);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(out, outlen, "%H:%M:%S", &tm);
}

/* Formats bits/s with a unit. */
static void monitor_rate(uint64_t bps, char *out, size_t outlen)
{
	if (bps >= 1000000000u)
		snprintf(out, outlen, "%.2fG", (double)bps / 1e9);
	else if (bps >= 1000000u)
		snprintf(out, outlen, "%.1fM", (double)bps / 1e6);
	else if (bps >= 1000u)
		snprintf(out, outlen, "%.1fk", (double)bps / 1e3);
	else
		snprintf(out, outlen, "%" PRIu64, bps);
}

/* Formats bytes with a binary unit. */
static void monitor_bytes(uint64_t n, char *out, size_t outlen)
{
	if (n >= 1u << 30)
		snprintf(out, outlen, "%.1fG", (double)n / (1u << 30));
	else if (n >= 1u << 20)
		snprintf(out, outlen, "%.1fM", (double)n / (1u << 20));
	else if (n >= 1u << 10)
		snprintf(out, outlen, "%.1fK", (double)n / (1u << 10));
	else
		snprintf(out, outlen, "%" PRIu64, n);
}

/* Adds a line to the event list. */
void monitor_event(struct monitor *m, const char *fmt, ...)
{
	char stamp[16], text[180];
	va_list ap;

	monitor_clock(monitor_now_us(), stamp, sizeof(stamp));
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(m->events[m->next_event], sizeof(m->events[0]), "%s %s",
	    stamp, text);
	m->next_event = (m->next_event + 1) % MONITOR_EVENTS;
	if (m->nevents < MONITOR_EVENTS)
		m->nevents++;
}

/* Log lines land in the event list while the monitor has the screen. */
static void monitor_log_cb(enum agg_log_level level, const char *line,
    void *arg)
{
	monitor_event(arg, "%s%s", level == AGG_LOG_ERROR ? "error: " :
	    level == AGG_LOG_WARN ? "warning: " : "", line);
}

/* The row of a session's link, created if new; NULL when full. */
static struct monitor_row *monitor_row(struct monitor *m, const char *sid,
    const char *name)
{
	struct monitor_row *r;
	size_t i;

	for (i = 0; i < m->nrows; i++)
		if (strcmp(m->rows[i].sid, sid) == 0 &&
		    strcmp(m->rows[i].name, name) == 0)
			return &m->rows[i];
	if (m->nrows == MONITOR_MAX_ROWS)
		return NULL;
	r = &m->rows[m->nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->sid, sizeof(r->sid), "%s", sid);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->state = MONITOR_DOWN;
	return r;
}

/* The monitor's state for a link state. */
static enum monitor_state monitor_state_of(enum agg_link_state state)
{
	switch (state) {
	case AGG_LINK_HANDSHAKE: return MONITOR_CONNECTING;
	case AGG_LINK_UP: return MONITOR_UP;
	case AGG_LINK_STALLED: return MONITOR_STALLED;
	case AGG_LINK_CLOSED: return MONITOR_DOWN;
	}
	return MONITOR_DOWN;
}

/* A state's name. */
static const char *monitor_state_name(enum monitor_state state)
{
	switch (state) {
	case MONITOR_CONNECTING: return "connecting";
	case MONITOR_UP: return "up";
	case MONITOR_STALLED: return "stalled";
	case MONITOR_DOWN: return "down";
	}
	return "?";
}

/* A link changed state: its row and the event list hear of it. */
void monitor_link_state(struct monitor *m, struct agg_session *s,
    struct agg_link *link, enum agg_link_state state, const char *reason)
{
	struct monitor_row *r = monitor_row(m, agg_session_id_hex(s),
	    agg_link_name(link));

	if (r != NULL) {
		r->state = monitor_state_of(state);
		snprintf(r->reason, sizeof(r->reason), "%s",
		    reason != NULL ? reason : "");
		r->since_us = monitor_now_us();
		r->present = state != AGG_LINK_CLOSED;
	}
	monitor_event(m, "%.8s %s: %s%s%s", agg_session_id_hex(s),
	    agg_link_name(link), monitor_state_name(monitor_state_of(state)),
	    reason != NULL && reason[0] != '\0' ? ": " : "",
	    reason != NULL ? reason : "");
}

/* Reads one session's statistics into the rows. */
static void monitor_collect_cb(struct agg_session *s, void *arg)
{
	struct monitor *m = arg;
	struct agg_link_stats ls[MONITOR_MAX_LINKS];
	struct monitor_row *r;
	size_t i, n;

	if (m->nsessions == MONITOR_MAX_SESSIONS)
		return;
	m->sessions[m->nsessions].wanted = 0;
	agg_session_get_stats(s, &m->sessions[m->nsessions++].st);
	n = agg_session_get_link_stats(s, ls, MONITOR_MAX_LINKS);
	if (n > MONITOR_MAX_LINKS)
		n = MONITOR_MAX_LINKS;
	for (i = 0; i < n; i++) {
		if ((r = monitor_row(m, agg_session_id_hex(s), ls[i].name)) ==
		    NULL)
			continue;
		r->st = ls[i];
		r->present = 1;
		r->state = monitor_state_of(ls[i].state);
		r->since_us = ls[i].state_since_us;
		if (ls[i].reason[0] != '\0')
			snprintf(r->reason, sizeof(r->reason), "%s",
			    ls[i].reason);
	}
}

/* The owner's dialled links that are not in its session: connecting, or
 * down with the dial's failure. */
static void monitor_collect_slots(struct monitor *m)
{
	struct monitor_row *r;
	size_t i, n;

	if (m->cbs->slots == NULL || m->nsessions != 1)
		return;
	n = m->cbs->slots(m->slots, MONITOR_MAX_LINKS, m->arg);
	m->sessions[0].wanted = n;
	if (n > MONITOR_MAX_LINKS)
		n = MONITOR_MAX_LINKS;
	for (i = 0; i < n; i++) {
		const struct monitor_slot *sl = &m->slots[i];

		if ((r = monitor_row(m, m->sessions[0].st.id, sl->name)) ==
		    NULL || r->present)
			continue;
		r->present = 1;
		if (sl->dialling && r->state != MONITOR_CONNECTING) {
			r->state = MONITOR_CONNECTING;
			r->since_us = monitor_now_us();
		} else if (!sl->dialling && r->state != MONITOR_DOWN) {
			r->state = MONITOR_DOWN;
			r->since_us = sl->why_us != 0 ? sl->why_us :
			    monitor_now_us();
		}
		if (sl->why[0] != '\0')
			snprintf(r->reason, sizeof(r->reason), "%s", sl->why);
		memset(&r->st, 0, sizeof(r->st));
	}
}

/* Looks at every session: links gone from theirs become down, rows of
 * sessions that are gone are dropped. */
static void monitor_collect(struct monitor *m)
{
	size_t i, j, keep = 0;
	int live;

	for (i = 0; i < m->nrows; i++)
		m->rows[i].present = 0;
	m->nsessions = 0;
	m->cbs->foreach(monitor_collect_cb, m, m->arg);
	monitor_collect_slots(m);
	for (i = 0; i < m->nrows; i++) {
		struct monitor_row *r = &m->rows[i];

		live = 0;
		for (j = 0; j < m->nsessions; j++)
			if (strcmp(m->sessions[j].st.id, r->sid) == 0)
				live = 1;
		if (!live)
			continue;
		if (!r->present && r->state != MONITOR_DOWN) {
			r->state = MONITOR_DOWN;
			r->since_us = monitor_now_us();
		}
		if (!r->present) {
			r->st.tx_rate_bps = r->st.rx_rate_bps = 0;
			r->st.inflight_bytes = r->st.queued_bytes = 0;
			if (m->cbs->forget_down_s > 0 && monitor_now_us() -
			    r->since_us > m->cbs->forget_down_s * 1000000ull)
				continue;
		}
		if (keep != i)
			m->rows[keep] = *r;
		keep++;
	}
	m->nrows = keep;
}

/* Writes one line, cut at the screen's width. */
static void monitor_line(int y, int attr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes one line, cut at the screen's width. */
static void monitor_line(int y, int attr, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (y >= LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	move(y, 0);
	clrtoeol();
	if (attr != 0)
		attron(attr);
	addnstr(buf, COLS);
	if (attr != 0)
		attroff(attr);
}

/* Draws one link row; the reason for its state ends the line. */
static void monitor_draw_row(struct monitor *m, int y,
    const struct monitor_row *r)
{
	const char *transport = m->cbs->transport != NULL ?
	    m->cbs->transport(r->name, m->arg) : NULL;
	const char *arrow = strstr(r->name, "->");
	char link[96], since[16], rtt[16], tx[16], rx[16], q[16], un[16];
	int attr = 0;

	if (arrow != NULL)
		snprintf(link, sizeof(link), "%.*s -> %s",
		    (int)(arrow - r->name), r->name, arrow + 2);
	else
		snprintf(link, sizeof(link), "from %s", r->name);
	monitor_clock(r->since_us, since, sizeof(since));
	if (r->st.srtt_us > 0 && r->state != MONITOR_DOWN)
		snprintf(rtt, sizeof(rtt), "%.1fms", r->st.srtt_us / 1e3);
	else
		snprintf(rtt, sizeof(rtt), "-");
	monitor_rate(r->st.tx_rate_bps, tx, sizeof(tx));
	monitor_rate(r->st.rx_rate_bps, rx, sizeof(rx));
	monitor_bytes(r->st.queued_bytes, q, sizeof(q));
	monitor_bytes(r->st.inflight_bytes, un, sizeof(un));
	if (r->state == MONITOR_DOWN)
		attr = A_BOLD;
	else if (r->state == MONITOR_STALLED)
		attr = A_REVERSE;
	monitor_line(y, attr, "  " MONITOR_ROW_FMT "%6" PRIu64 " %s",
	    transport != NULL ? transport : "?", link,
	    monitor_state_name(r->state), since, rtt, tx, rx, q, un,
	    r->st.resent_frames, r->state == MONITOR_UP ? "" : r->reason);
}

/* Draws the whole screen. */
static void monitor_draw(struct monitor *m)
{
	const char *status = m->cbs->status != NULL ?
	    m->cbs->status(m->arg) : "";
	char now[16], tx[16], rx[16], un[16];
	size_t i, j, k, hidden = 0, shown_events;
	int y = 0, room;

	monitor_clock(monitor_now_us(), now, sizeof(now));
	monitor_line(y++, A_REVERSE, "%s  %zu session%s  q: quit  a: %s links "
	    "not connected  %*s", m->program, m->nsessions,
	    m->nsessions == 1 ? "" : "s", m->show_all ? "hide" : "show",
	    COLS > 80 ? COLS - 80 : 1, now);
	if (m->nsessions == 0)
		monitor_line(y++, 0, "no session");
	for (i = 0; i < m->nsessions && y < LINES - 2; i++) {
		const struct agg_session_stats *st = &m->sessions[i].st;

		monitor_rate(st->tx_rate_bps, tx, sizeof(tx));
		monitor_rate(st->rx_rate_bps, rx, sizeof(rx));
		monitor_bytes(st->unacked_bytes, un, sizeof(un));
		monitor_line(y++, A_BOLD, "session %.8s  links %zu/%zu up  "
		    "streams %zu  send %sbit/s  recv %sbit/s  unacked %s  "
		    "resent %" PRIu64, st->id, st->links_up,
		    m->sessions[i].wanted > st->links ? m->sessions[i].wanted :
		    st->links,
		    st->streams, tx, rx, un, st->resent_frames);
		monitor_line(y++, A_UNDERLINE, "  " MONITOR_ROW_FMT "%6s %s",
		    "TRANS", "LINK (LOCAL -> REMOTE)", "STATE", "SINCE", "RTT",
		    "SEND", "RECV", "QUEUE", "UNACKED", "RESENT", "WHY");
		for (j = 0; j < m->nrows; j++) {
			const struct monitor_row *r = &m->rows[j];

			if (strcmp(r->sid, st->id) != 0)
				continue;
			if (!m->show_all && r->state != MONITOR_UP &&
			    r->state != MONITOR_STALLED) {
				hidden++;
				continue;
			}
			if (y < LINES - 2)
				monitor_draw_row(m, y++, r);
		}
	}
	if (hidden > 0)
		monitor_line(y++, 0, "  (%zu link%s not connected hidden: "
		    "press a)", hidden, hidden == 1 ? "" : "s");
	if (status[0] != '\0')
		monitor_line(y++, 0, "%s", status);
	monitor_line(y++, 0, "%s", "");
	room = LINES - y - 1;
	shown_events = room <= 0 ? 0 : (size_t)room < m->nevents ?
	    (size_t)room : m->nevents;
	if (shown_events > MONITOR_EVENTS_SHOWN)
		shown_events = MONITOR_EVENTS_SHOWN;
	if (shown_events > 0 && y < LINES) {
		monitor_line(y++, A_UNDERLINE, "last events");
		for (k = m->nevents - shown_events; k < m->nevents; k++)
			monitor_line(y++, 0, "%s", m->events[(m->next_event +
			    MONITOR_EVENTS - m->nevents + k) % MONITOR_EVENTS]);
	}
	move(y < LINES ? y : LINES - 1, 0);
	clrtobot();
	refresh();
}

/* Reads the keys waiting; 1 when q was pressed. */
static int monitor_keys(struct monitor *m)
{
	int ch;

	while ((ch = getch()) != ERR) {
		switch (ch) {
		case 'q':
		case 'Q':
			return 1;
		case 'a':
		case 'A':
			m->show_all = !m->show_all;
			break;
		case KEY_RESIZE:
			clear();
			break;
		default:
			break;
		}
	}
	return 0;
}

/* The refresh timer: keys (and resizes), statistics, screen. */
static void monitor_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct monitor *m = arg;

	(void)fd;
	(void)what;
	if (monitor_keys(m)) {
		/* The owner may free the monitor in there. */
		m->cbs->quit(m->arg);
		return;
	}
	monitor_collect(m);
	monitor_draw(m);
}

/* A key was pressed. */
static void monitor_input_cb(evutil_socket_t fd, short what, void *arg)
{
	struct monitor *m = arg;

	(void)fd;
	(void)what;
	if (monitor_keys(m)) {
		m->cbs->quit(m->arg);
		return;
	}
	monitor_collect(m);
	monitor_draw(m);
}

/* Ctrl-\ (SIGQUIT), or SIGHUP where the owner does not take it: their
 * default action would end the program with the terminal left without
 * echo (cbreak mode keeps Ctrl-\ a signal); quit as with q. */
static void monitor_signal_cb(evutil_socket_t fd, short what, void *arg)
{
	struct monitor *m = arg;

	(void)fd;
	(void)what;
	m->cbs->quit(m->arg);
}

/* Handles sig while the monitor is on if nothing else does (its action
 * is still the default: not the owner's handler, not ignored as under
 * nohup); -1 if out of memory. */
static int monitor_take_signal(struct event_base *base, int sig,
    struct monitor *m, struct event **out)
{
	struct sigaction sa;

	*out = NULL;
	if (sigaction(sig, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
		return 0;
	if ((*out = evsignal_new(base, sig, monitor_signal_cb, m)) == NULL ||
	    evsignal_add(*out, NULL) != 0)
		return -1;
	return 0;
}

/* Takes over the terminal. */
struct monitor *monitor_new(struct event_base *base, const char *program,
    const struct monitor_callbacks *cbs, void *arg, char *err,
    size_t errlen)
{
	struct timeval tv = { 0, MONITOR_REFRESH_MS * 1000 };
	struct monitor *m;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->cbs = cbs;
	m->arg = arg;
	m->show_all = 1;
	snprintf(m->program, sizeof(m->program), "%s", program);
	if ((m->screen = newterm(NULL, stdout, stdin)) == NULL) {
		snprintf(err, errlen, "cannot start the monitor: terminal "
		    "type '%.60s' unknown", getenv("TERM") != NULL ?
		    getenv("TERM") : "");
		free(m);
		return NULL;
	}
	cbreak();
	noecho();
	nodelay(stdscr, TRUE);
	keypad(stdscr, TRUE);
	curs_set(0);
	m->timer = event_new(base, -1, EV_PERSIST, monitor_timer_cb, m);
	m->input = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST,
	    monitor_input_cb, m);
	if (m->timer == NULL || m->input == NULL ||
	    event_add(m->timer, &tv) != 0 ||
	    monitor_take_signal(base, SIGQUIT, m, &m->sigquit) != 0 ||
	    monitor_take_signal(base, SIGHUP, m, &m->sighup) != 0) {
		snprintf(err, errlen, "out of memory");
		monitor_free(m);
		return NULL;
	}
	/* Keys wake the loop only from a terminal: a file or a pipe at its
	 * end would be readable for ever. The timer reads keys anyway. */
	if (isatty(STDIN_FILENO))
		event_add(m->input, NULL);
	agg_log_set_handler(monitor_log_cb, m);
	monitor_collect(m);
	monitor_draw(m);
	return m;
}

/* Gives the terminal back and frees the monitor. */
void monitor_free(struct monitor *m)
{
	if (m == NULL)
		return;
	agg_log_set_handler(NULL, NULL);
	if (m->timer != NULL)
		event_free(m->timer);
	if (m->input != NULL)
		event_free(m->input);
	if (m->sigquit != NULL)
		event_free(m->sigquit);
	if (m->sighup != NULL)
		event_free(m->sighup);
	if (m->screen != NULL) {
		endwin();
		delscreen(m->screen);
	}
	free(m);
}
