/* Native mutation fuzzer for actors/preprocessor/jpeg.c, built by tests/preprocessor/test_jpeg.py with
 * AddressSanitizer + UndefinedBehaviorSanitizer when a host C compiler has them.
 *
 * Why native: in wasm an out-of-bounds read inside the linear memory does not trap, so the actor tests
 * cannot see one; ASan sees every byte read past each (exactly sized) input buffer, and UBSan every
 * overflow or bad shift. Not part of the actor (actor.toml does not list it).
 *
 *   jpegfuzz ITERATIONS FILE...   mutates each file ITERATIONS times (flips, random bytes, truncation),
 *                                 decodes at a random scale and reads the header; prints "ok N bad M".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../actors/preprocessor/jpeg.h"

static uint64_t state = 88172645463325252ull; /* fixed seed: reproducible runs */

static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long iterations = atol(argv[1]), ok = 0, bad = 0;
    for (int f = 2; f < argc; f++) {
        FILE *fp = fopen(argv[f], "rb");
        if (!fp) return 2;
        fseek(fp, 0, SEEK_END);
        long n = ftell(fp);
        rewind(fp);
        uint8_t *orig = malloc((size_t)n);
        if (!orig || fread(orig, 1, (size_t)n, fp) != (size_t)n) return 2;
        fclose(fp);
        for (long it = 0; it < iterations; it++) {
            int mode = (int)(next() % 4);
            size_t len = mode == 3 ? (size_t)(next() % (uint64_t)n) : (size_t)n;
            uint8_t *data = malloc(len ? len : 1); /* exact size, so ASan flags any read past the end */
            memcpy(data, orig, len);
            int flips = mode == 3 ? 0 : 1 + (int)(next() % (mode == 2 ? 32 : 4));
            for (int k = 0; k < flips && len; k++) {
                size_t pos = (size_t)(next() % len);
                if (next() % 2) data[pos] = (uint8_t)next();
                else data[pos] ^= (uint8_t)(1u << (next() % 8));
            }
            waft_image img;
            const char *err = NULL;
            if (waft_jpeg_decode(data, len, 1u << (next() % 4), 1u << 22, &img, &err) == 0) {
                ok++;
                free(img.pixels);
            } else {
                bad++;
                if (!err || img.pixels) return printf("bad error contract\n"), 1;
            }
            uint32_t w, h, o;
            waft_jpeg_info(data, len, &w, &h, &o, &err);
            free(data);
        }
        free(orig);
    }
    printf("ok %ld bad %ld\n", ok, bad);
    return 0;
}
