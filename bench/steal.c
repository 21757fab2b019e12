#include "bench/steal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int steal_sample(struct steal_sample *out)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	char line[512];
	while (fgets(line, sizeof line, f) && out->cpus < STEAL_MAX_CPUS) {
		int cpu;
		unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
		/* "cpu " is the sum (skipped); "cpuN" one CPU. */
		if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
			continue;
		if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice,
			   &sys, &idle, &iowait, &irq, &softirq, &steal) != 9)
			continue;
		if (cpu != out->cpus)
			break;
		out->seconds[out->cpus++] = (double)steal / (double)(hz > 0 ? hz : 100);
	}
	fclose(f);
	return out->cpus > 0 ? 0 : -1;
}
