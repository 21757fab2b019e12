#include "bench/proctree.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pinfo {
	pid_t pid, ppid;
	unsigned long long ticks, child_ticks;
};

static int read_stat(pid_t pid, struct pinfo *p)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	char *s = strrchr(buf, ')');
	if (!s)
		return -1;
	char state;
	int ppid;
	unsigned long long ut, st, cut, cst;
	/* fields 3..17: state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime cutime cstime */
	if (sscanf(s + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &state,
		   &ppid, &ut, &st, &cut, &cst) != 6)
		return -1;
	p->pid = pid;
	p->ppid = ppid;
	p->ticks = ut + st;
	p->child_ticks = cut + cst;
	return 0;
}

static uint64_t read_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t kl = strlen(key);
	uint64_t v = 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, kl) == 0) {
			v = strtoull(line + kl, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

int proctree_sample(pid_t root, struct proctree_sample *out)
{
	memset(out, 0, sizeof *out);
	struct pinfo rootp;
	if (read_stat(root, &rootp) < 0)
		return -1;
	size_t cap = 256, n = 0;
	struct pinfo *all = malloc(cap * sizeof *all);
	if (!all)
		return -1;
	DIR *d = opendir("/proc");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			char *endp;
			long pid = strtol(e->d_name, &endp, 10);
			if (*endp || pid <= 0)
				continue;
			if (n == cap) {
				struct pinfo *g = realloc(all, 2 * cap * sizeof *all);
				if (!g)
					break;
				all = g;
				cap *= 2;
			}
			if (read_stat((pid_t)pid, &all[n]) == 0)
				n++;
		}
		closedir(d);
	}
	/* Breadth-first from root over the parent links; the tree is small. */
	pid_t *tree = malloc((n + 1) * sizeof *tree);
	if (!tree) {
		free(all);
		return -1;
	}
	size_t nt = 0;
	tree[nt++] = root;
	unsigned long long ticks = rootp.ticks + rootp.child_ticks;
	for (size_t i = 0; i < nt; i++) {
		for (size_t j = 0; j < n; j++) {
			if (all[j].ppid == tree[i] && all[j].pid != root && nt <= n) {
				tree[nt++] = all[j].pid;
				ticks += all[j].ticks;
			}
		}
	}
	long hz = sysconf(_SC_CLK_TCK);
	out->procs = (int)nt;
	out->cpu_s = (double)ticks / (double)(hz > 0 ? hz : 100);
	for (size_t i = 0; i < nt; i++) {
		out->rss_kb += read_kb(tree[i], "status", "VmRSS:");
		out->pss_kb += read_kb(tree[i], "smaps_rollup", "Pss:");
	}
	free(tree);
	free(all);
	return 0;
}
