#include "train/memstat.h"

#include <stdio.h>
#include <string.h>

static double status_field_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            if (sscanf(line + n + 1, "%lf", &v) != 1) v = -1;
            break;
        }
    fclose(f);
    return v;
}

double memstat_rss_bytes(void) {
    double k = status_field_kib("VmRSS");
    return k < 0 ? -1 : k * 1024.0;
}

double memstat_peak_bytes(void) {
    double k = status_field_kib("VmHWM");
    return k < 0 ? -1 : k * 1024.0;
}

int memstat_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}
