#ifndef CHATD_BENCH_PROCTREE_H
#define CHATD_BENCH_PROCTREE_H

/* Resource use of a process tree (chatd's master and every descendant:
 * its workers), read from /proc. */

#include <stdint.h>
#include <sys/types.h>

struct proctree_sample {
	int procs;          /* processes found (0: the root is gone) */
	double cpu_s;       /* utime + stime of each, plus the root's reaped
			     * children (cutime + cstime), in seconds */
	uint64_t rss_kb;    /* sum of VmRSS: counts shared pages once per process */
	uint64_t pss_kb;    /* sum of Pss (smaps_rollup): shared pages split; 0 if unreadable */
};

/* Samples root and its descendants. Returns 0, or -1 when root does not
 * exist. */
int proctree_sample(pid_t root, struct proctree_sample *out);

#endif
