#ifndef CHATD_BENCH_STEAL_H
#define CHATD_BENCH_STEAL_H

/* Time the hypervisor ran other guests while this machine's CPUs wanted
 * to run ("steal" in /proc/stat), per CPU. On shared virtual CPUs a
 * step can run at half speed for a while with the same work done: the
 * processes' CPU seconds look alike, their latency does not. */

#define STEAL_MAX_CPUS 64

struct steal_sample {
	int cpus;                        /* 0: /proc/stat unreadable */
	double seconds[STEAL_MAX_CPUS];  /* since boot, per CPU */
};

/* Returns 0, or -1 when /proc/stat cannot be read. */
int steal_sample(struct steal_sample *out);

#endif
