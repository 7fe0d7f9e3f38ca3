/*
 * speedtest.h: agg-client --speed-test. Waits for the links, then uploads
 * and downloads the seeded pseudo-random stream of agg/speedtest.h for a
 * number of seconds each, prints a line per second with each link's share
 * and a summary (or one JSON object), and ends the program.
 */
#ifndef SPEEDTEST_H
#define SPEEDTEST_H

struct client;
struct speedtest;

/* Starts the test on the client's session; NULL when out of memory. */
struct speedtest *speedtest_new(struct client *c, unsigned seconds,
    int json);
/* Stops the test and frees it. */
void speedtest_free(struct speedtest *t);

#endif
