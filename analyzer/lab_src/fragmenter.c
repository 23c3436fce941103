/* Fill memory with 4 KiB anonymous pages, keep one mlocked page per pageblock (by physical
 * frame number, from /proc/self/pagemap), free the rest: lots of free memory, almost no
 * pageblock wholly free. Usage: fragmenter RESERVE_MB [PAGEBLOCK_ORDER]. Touches /tmp/fragmented
 * when done, then sleeps until killed. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long avail_kb(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %ld kB", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv) {
    long reserve_kb = (argc > 1 ? atol(argv[1]) : 48) * 1024;
    int pbo = argc > 2 ? atoi(argv[2]) : 9;
    long psz = sysconf(_SC_PAGESIZE);
    size_t chunk = 64UL << 20, n = 0, cap = 4096;
    char **chunks = malloc(cap * sizeof *chunks);
    while (avail_kb() > reserve_kb + 65536) {
        char *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) break;
        for (size_t i = 0; i < chunk; i += psz) p[i] = 1;
        chunks[n++] = p;
        if (n == cap) break;
    }
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0) { perror("pagemap"); return 1; }
    size_t blocks = (size_t)1 << 22;  /* frame numbers up to 16 GiB of 2 MiB blocks */
    unsigned char *kept = calloc(blocks, 1);
    long keep = 0, freed = 0;
    for (size_t c = 0; c < n; c++) {
        for (size_t off = 0; off < chunk; off += psz) {
            char *va = chunks[c] + off;
            uint64_t ent;
            if (pread(pm, &ent, 8, ((uintptr_t)va / psz) * 8) != 8) continue;
            uint64_t pfn = ent & ((1ULL << 55) - 1);
            size_t b = (size_t)(pfn >> pbo);
            if ((ent >> 63) && b < blocks && !kept[b]) {
                kept[b] = 1;
                mlock(va, psz);
                keep++;
            } else {
                madvise(va, psz, MADV_DONTNEED);
                freed++;
            }
        }
    }
    fprintf(stderr, "fragmenter: kept %ld pages (one per pageblock), freed %ld\n", keep, freed);
    close(open("/tmp/fragmented", O_CREAT | O_WRONLY, 0644));
    for (;;) pause();
}
