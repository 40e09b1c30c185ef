/*
 * test-backend.c - the backend operations (GEMM, SVD, gather) on every available
 * backend against naive references; CUDA cases skip without a device.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "lib/backend-impl.h"
#include "tests/test-util.h"

static void naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                       double *c) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) s += (double)(ta ? a[l * m + i] : a[i * k + l]) * (tb ? b[j * k + l] : b[l * n + j]);
            c[i * n + j] = s;
        }
}

static void check_backend(enum fpd_backend_kind kind) {
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(kind, 0, &be, &err), 0), "%s", err.msg);
    void *ctx;
    const struct fpd_backend_i *ops = fpd__backend_iface(be, &ctx);
    uint64_t seed = 11;
    /* sizes on both sides of the CPU's small-product threshold */
    const int64_t sizes[][3] = {{3, 4, 5}, {37, 29, 41}, {1, 64, 7}};
    for (int q = 0; q < 3; q++)
        for (int tt = 0; tt < 4; tt++) {
            bool ta = tt & 1, tb = tt & 2;
            int64_t m = sizes[q][0], n = sizes[q][1], k = sizes[q][2];
            float *a = malloc((size_t)(m * k) * 4), *b = malloc((size_t)(k * n) * 4), *c = malloc((size_t)(m * n) * 4);
            double *ref = malloc((size_t)(m * n) * 8);
            for (int64_t e = 0; e < m * k; e++) a[e] = (float)test_rand_sym(&seed);
            for (int64_t e = 0; e < k * n; e++) b[e] = (float)test_rand_sym(&seed);
            naive_gemm(ta, tb, m, n, k, a, b, ref);
            void *da, *db, *dc;
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(m * k) * 4, &da, &err), 0));
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(k * n) * 4, &db, &err), 0));
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(m * n) * 4, &dc, &err), 0));
            ops->copy(ctx, da, a, (size_t)(m * k) * 4, FPD_COPY_HOST_TO_DEVICE, &err);
            ops->copy(ctx, db, b, (size_t)(k * n) * 4, FPD_COPY_HOST_TO_DEVICE, &err);
            cr_assert(eq(int, ops->gemm(ctx, ta, tb, m, n, k, 1.0f, da, ta ? m : k, db, tb ? k : n, 0.0f, dc, n, &err), 0),
                      "%s", err.msg);
            ops->copy(ctx, c, dc, (size_t)(m * n) * 4, FPD_COPY_DEVICE_TO_HOST, &err);
            double num = 0, den = 0;
            for (int64_t e = 0; e < m * n; e++) {
                num += (c[e] - ref[e]) * (c[e] - ref[e]);
                den += ref[e] * ref[e];
            }
            cr_assert(lt(dbl, num / den, 1e-10), "gemm %lldx%lldx%lld ta=%d tb=%d nmse %g", (long long)m, (long long)n,
                      (long long)k, ta, tb, num / den);
            ops->free(ctx, da, &err);
            ops->free(ctx, db, &err);
            ops->free(ctx, dc, &err);
            free(a);
            free(b);
            free(c);
            free(ref);
        }

    /* thin SVD of a wide 6 x 9 matrix: U S Vt reproduces it, singular values descending */
    int64_t m = 6, n = 9, mn = 6;
    float a[54], a0[54], s[6], u[36], vt[54];
    for (int e = 0; e < 54; e++) a0[e] = a[e] = (float)test_rand_sym(&seed);
    size_t wsz = 0;
    cr_assert(eq(int, ops->svd_workspace(ctx, m, n, &wsz, &err), 0), "%s", err.msg);
    void *da, *ds, *du, *dvt, *dw;
    ops->alloc(ctx, sizeof a, &da, &err);
    ops->alloc(ctx, sizeof s, &ds, &err);
    ops->alloc(ctx, sizeof u, &du, &err);
    ops->alloc(ctx, sizeof vt, &dvt, &err);
    ops->alloc(ctx, wsz, &dw, &err);
    ops->copy(ctx, da, a, sizeof a, FPD_COPY_HOST_TO_DEVICE, &err);
    cr_assert(eq(int, ops->svd(ctx, m, n, da, ds, du, dvt, dw, wsz, &err), 0), "%s", err.msg);
    ops->copy(ctx, s, ds, sizeof s, FPD_COPY_DEVICE_TO_HOST, &err);
    ops->copy(ctx, u, du, sizeof u, FPD_COPY_DEVICE_TO_HOST, &err);
    ops->copy(ctx, vt, dvt, sizeof vt, FPD_COPY_DEVICE_TO_HOST, &err);
    for (int q = 1; q < mn; q++) cr_assert(ge(flt, s[q - 1], s[q]));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double r = 0;
            for (int64_t q = 0; q < mn; q++) r += (double)u[i * mn + q] * s[q] * vt[q * n + j];
            cr_assert(le(dbl, fabs(r - a0[i * n + j]), 1e-4), "svd (%lld,%lld): %g vs %g", (long long)i, (long long)j,
                      r, (double)a0[i * n + j]);
        }
    ops->free(ctx, da, &err);
    ops->free(ctx, ds, &err);
    ops->free(ctx, du, &err);
    ops->free(ctx, dvt, &err);
    ops->free(ctx, dw, &err);

    /* gather */
    float src[5 * 3], dst[4 * 3];
    for (int e = 0; e < 15; e++) src[e] = (float)e;
    int64_t idx[4] = {4, 0, 4, 2};
    void *dsrc, *ddst, *didx;
    ops->alloc(ctx, sizeof src, &dsrc, &err);
    ops->alloc(ctx, sizeof dst, &ddst, &err);
    ops->alloc(ctx, sizeof idx, &didx, &err);
    ops->copy(ctx, dsrc, src, sizeof src, FPD_COPY_HOST_TO_DEVICE, &err);
    ops->copy(ctx, didx, idx, sizeof idx, FPD_COPY_HOST_TO_DEVICE, &err);
    cr_assert(eq(int, ops->gather_rows(ctx, dsrc, 3, didx, 4, ddst, &err), 0));
    cr_assert(eq(int, ops->synchronize(ctx, &err), 0));
    ops->copy(ctx, dst, ddst, sizeof dst, FPD_COPY_DEVICE_TO_HOST, &err);
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 3; j++) cr_assert(eq(flt, dst[b * 3 + j], (float)(idx[b] * 3 + j)));
    ops->free(ctx, dsrc, &err);
    ops->free(ctx, ddst, &err);
    ops->free(ctx, didx, &err);
    fpd_backend_free(be);
}

Test(backend, cpu_ops_match_naive) { check_backend(FPD_BACKEND_KIND_CPU); }

Test(backend, cuda_ops_match_naive) {
    if (!fpd_backend_available(FPD_BACKEND_KIND_CUDA)) {
        struct fpd_error err;
        struct fpd_backend *be = NULL;
        enum fpd_status st = fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err);
        cr_assert(ne(int, st, FPD_STATUS_OK));
        if (strstr(fpd_build_features(), "cuda") == NULL)
            cr_assert(ne(ptr, strstr(err.msg, "rebuild with make CUDA=1"), NULL), "%s", err.msg);
        cr_skip_test("no CUDA device (%s)", err.msg);
    }
    check_backend(FPD_BACKEND_KIND_CUDA);
}

Test(backend, best_is_available) {
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init_best(&be, &err), 0));
    cr_assert(ne(ptr, (void *)fpd_backend_name(be), NULL));
    fpd_backend_free(be);
}

/* ------------------------------------------------------------------------
 * The registry (lib/backend.c): loading the CUDA backend object with dlopen,
 * through the fake backend objects (tests/lib/fake-cuda-backend.c, built next to
 * this binary). Criterion runs each test in its own process, so each test sees
 * the registry's first load. */

#include <pthread.h>

/* build/NAME next to this test binary, or NULL (skipping) when it is not there. */
static const char *build_file(const char *name) {
    static char buf[4200];
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(gt(sz, (size_t)(n > 0 ? n : 0), 0));
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(buf, sizeof buf, "%s/%s", exe, name);
    if (access(buf, R_OK) != 0) cr_skip_test("%s is not built (make fake-backends)", buf);
    return buf;
}

static void use_fake(const char *variant) {
    char name[64];
    snprintf(name, sizeof name, "libfpd-fakecuda-%s.so", variant);
    cr_assert(eq(int, setenv("FPD_CUDA_BACKEND", build_file(name), 1), 0));
}

/* True when a file whose name contains `what` is mapped into this process. */
static bool mapped(const char *what) {
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert(ne(ptr, f, NULL));
    char line[8192];
    bool found = false;
    while (fgets(line, sizeof line, f))
        if (strstr(line, what)) found = true;
    fclose(f);
    return found;
}

Test(backend_registry, loads_the_object_on_first_request) {
    use_fake("ok");
    cr_assert(not(mapped("libfpd-fakecuda")), "loaded before any request");
    cr_assert(ne(ptr, strstr(fpd_build_features(), "(not loaded)"), NULL), "%s", fpd_build_features());
    cr_assert(not(mapped("libfpd-fakecuda")), "fpd_build_features loaded the object");
    cr_assert(fpd_backend_available(FPD_BACKEND_KIND_CUDA));
    cr_assert(mapped("libfpd-fakecuda-ok.so"));
    struct fpd_error err;
    cr_assert(eq(int, fpd_backend_device_count(FPD_BACKEND_KIND_CUDA, &err), 1));
    cr_assert(ne(ptr, strstr(fpd_build_features(), "(loaded, 1 device)"), NULL), "%s", fpd_build_features());
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), 0), "%s", err.msg);
    cr_assert(eq(str, (char *)fpd_backend_name(be), "fakecuda:0 (host memory)"));
    cr_assert(eq(int, fpd_backend_get_kind(be), FPD_BACKEND_KIND_CUDA));
    cr_assert(fpd_backend_has_engine(be));
    fpd_backend_free(be);
    /* init_best takes it */
    cr_assert(eq(int, fpd_backend_init_best(&be, &err), 0));
    cr_assert(eq(int, fpd_backend_get_kind(be), FPD_BACKEND_KIND_CUDA));
    fpd_backend_free(be);
}

/* The operations reach the object's code: GEMM, SVD and gather against naive
 * references, as for the linked-in backends. */
Test(backend_registry, fake_object_ops_match_naive) {
    use_fake("ok");
    check_backend(FPD_BACKEND_KIND_CUDA);
}

Test(backend_registry, second_device_of_two) {
    use_fake("ok");
    setenv("FPD_FAKE_CUDA_DEVICES", "2", 1);
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 1, &be, &err), 0), "%s", err.msg);
    cr_assert(eq(str, (char *)fpd_backend_name(be), "fakecuda:1 (host memory)"));
    fpd_backend_free(be);
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 2, &be, &err), FPD_STATUS_BACKEND));
    cr_assert(eq(str, err.msg, "no CUDA device 2 (2 found)"));
    cr_assert(eq(ptr, be, NULL));
}

Test(backend_registry, no_device) {
    use_fake("ok");
    setenv("FPD_FAKE_CUDA_DEVICES", "0", 1);
    cr_assert(not(fpd_backend_available(FPD_BACKEND_KIND_CUDA)));
    struct fpd_error err;
    cr_assert(eq(int, fpd_backend_device_count(FPD_BACKEND_KIND_CUDA, &err), 0));
    cr_assert(ne(ptr, strstr(err.msg, "no CUDA device"), NULL), "%s", err.msg);
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_BACKEND));
    cr_assert(ne(ptr, strstr(err.msg, "FPD_FAKE_CUDA_DEVICES=0"), NULL), "%s", err.msg);
    cr_assert(ne(ptr, strstr(fpd_build_features(), "(loaded, 0 devices)"), NULL), "%s", fpd_build_features());
    /* the best backend is then the CPU */
    cr_assert(eq(int, fpd_backend_init_best(&be, &err), 0));
    cr_assert(eq(int, fpd_backend_get_kind(be), FPD_BACKEND_KIND_CPU));
    fpd_backend_free(be);
}

Test(backend_registry, missing_file) {
    cr_assert(eq(int, setenv("FPD_CUDA_BACKEND", "/nonexistent/libfpd-cuda.so", 1), 0));
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(not(fpd_backend_available(FPD_BACKEND_KIND_CUDA)));
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(eq(str, err.msg,
                 "the CUDA backend object /nonexistent/libfpd-cuda.so (FPD_CUDA_BACKEND) does not exist"));
    cr_assert(ne(ptr, strstr(fpd_build_features(), "cuda-backend=missing"), NULL), "%s", fpd_build_features());
    /* direct open */
    const struct fpd_backend_plugin *pl = (void *)1;
    cr_assert(eq(int, fpd__backend_plugin_open("/nonexistent/x.so", &pl, &err), FPD_STATUS_IO));
    cr_assert(eq(ptr, (void *)pl, NULL));
}

Test(backend_registry, not_a_shared_object) {
    char path[] = "/tmp/fpd-test-notelf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(sz, (size_t)write(fd, "not an ELF file\n", 16), 16));
    close(fd);
    setenv("FPD_CUDA_BACKEND", path, 1);
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    enum fpd_status st = fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err);
    unlink(path);
    cr_assert(eq(int, st, FPD_STATUS_BACKEND));
    /* dlopen's own message, naming the file */
    cr_assert(ne(ptr, strstr(err.msg, "cannot load the backend object: "), NULL), "%s", err.msg);
    cr_assert(ne(ptr, strstr(err.msg, path), NULL), "%s", err.msg);
}

Test(backend_registry, missing_entry_symbol) {
    use_fake("nosym");
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_BACKEND));
    cr_assert(ne(ptr, strstr(err.msg, "has no fpd_backend_plugin_init"), NULL), "%s", err.msg);
    cr_assert(not(fpd_backend_available(FPD_BACKEND_KIND_CUDA)));
    /* a refused object is closed again */
    cr_assert(not(mapped("libfpd-fakecuda-nosym.so")));
}

Test(backend_registry, stale_abi_version_refused) {
    use_fake("oldabi");
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_UNSUPPORTED));
    char want[128];
    snprintf(want, sizeof want, "has backend ABI version 0, this libfpd needs %d", FPD_BACKEND_ABI_VERSION);
    cr_assert(ne(ptr, strstr(err.msg, want), NULL), "%s", err.msg);
    cr_assert(ne(ptr, strstr(err.msg, "rebuild it (make CUDA=1)"), NULL), "%s", err.msg);
    cr_assert(ne(ptr, strstr(fpd_build_features(), "does not load: "), NULL), "%s", fpd_build_features());
}

Test(backend_registry, stale_layout_refused) {
    use_fake("layout");
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_UNSUPPORTED));
    char want[160];
    snprintf(want, sizeof want, "another layout of struct fpd_backend_i (%zu bytes, this libfpd has %zu)",
             sizeof(struct fpd_backend_i) + 8, sizeof(struct fpd_backend_i));
    cr_assert(ne(ptr, strstr(err.msg, want), NULL), "%s", err.msg);
}

Test(backend_registry, object_refusing_the_host) {
    use_fake("refuse");
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err.msg, "refused this libfpd"), NULL), "%s", err.msg);
}

/* The first outcome is kept: many threads asking at once all get it, and the
 * object is opened once. */
static void *ask_available(void *arg) {
    *(bool *)arg = fpd_backend_available(FPD_BACKEND_KIND_CUDA);
    return NULL;
}

Test(backend_registry, concurrent_first_requests) {
    use_fake("ok");
    pthread_t th[8];
    bool got[8];
    for (int i = 0; i < 8; i++) cr_assert(eq(int, pthread_create(&th[i], NULL, ask_available, &got[i]), 0));
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert(got[i]);
    }
    /* changing the variable afterwards changes nothing: the outcome is cached */
    setenv("FPD_CUDA_BACKEND", "/nonexistent.so", 1);
    cr_assert(fpd_backend_available(FPD_BACKEND_KIND_CUDA));
}

/* The object allocates through libfpd's allocator (the host table), so hooks set
 * with fpd_allocator_set see its allocations. */
static long g_allocs;
static void *count_malloc(size_t n, void *u) {
    (void)u;
    g_allocs++;
    return malloc(n);
}
static void count_free(void *p, void *u) {
    (void)u;
    free(p);
}

Test(backend_registry, object_uses_the_libfpd_allocator) {
    use_fake("ok");
    struct fpd_error err;
    cr_assert(fpd_backend_available(FPD_BACKEND_KIND_CUDA));
    struct fpd_allocator a = {.malloc_fn = count_malloc, .free_fn = count_free, .user_data = NULL};
    fpd_allocator_set(&a);
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CPU, 0, &be, &err), 0), "%s", err.msg);
    long cpu_allocs = g_allocs;
    fpd_backend_free(be);
    g_allocs = 0;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), 0), "%s", err.msg);
    /* what the CPU backend allocates, plus the fake's own context, made in the object */
    cr_assert(eq(long, g_allocs, cpu_allocs + 1), "%ld allocations seen (CPU backend: %ld)", g_allocs, cpu_allocs);
    fpd_backend_free(be);
    fpd_allocator_set(NULL);
}

/* The FPD engine on the fake CUDA backend: the same numbers as on the CPU
 * (the fake runs the CPU's code, so exactly), and the work went through the
 * object (its call counts). The CPU engine is itself tested against the naive
 * reference in test-engine.c; here the forward is also checked against it. */
Test(backend_registry, engine_through_the_object_equals_cpu) {
    use_fake("ok");
    char log[] = "/tmp/fpd-test-fakelog-XXXXXX";
    int fd = mkstemp(log);
    cr_assert(ge(int, fd, 0));
    close(fd);
    setenv("FPD_FAKE_CUDA_LOG", log, 1);
    struct fpd_layer_shape s = {.rows = 60, .dim = 6, .k = 3, .terms = 2, .row_shape = {4, 4, 4},
                                .col_shape = {1, 2, 3}, .ranks = {1, 3, 3, 1}};
    struct fpd_error err;
    struct fpd_layer *la = NULL, *lb = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &la, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_init(&s, &lb, &err), 0), "%s", err.msg);
    test_fill_random(la, 5, 0.5);
    test_fill_random(lb, 5, 0.5);
    struct fpd_backend *cuda = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &cuda, &err), 0), "%s", err.msg);
    struct fpd_engine_params pa = fpd_engine_default_params(), pb = pa;
    pa.threads = pb.threads = 1;
    pa.optimizer.kind = pb.optimizer.kind = FPD_OPTIMIZER_KIND_ADAM;
    pa.optimizer.learning_rate = pb.optimizer.learning_rate = 0.01;
    pb.backend = cuda;
    struct fpd_engine *ea = NULL, *eb = NULL;
    cr_assert(eq(int, fpd_engine_init(la, &pa, &ea, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_init(lb, &pb, &eb, &err), 0), "%s", err.msg);
    int64_t idx[5] = {3, 59, 3, 17, 0};
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 5, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    float oa[30], ob[30], g[30];
    for (int step = 0; step < 3; step++) {
        cr_assert(eq(int, fpd_engine_forward(ea, &b, oa, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_forward(eb, &b, ob, &err), 0), "%s", err.msg);
        for (int e = 0; e < 30; e++) cr_assert(eq(flt, oa[e], ob[e]), "step %d entry %d", step, e);
        if (step == 0)
            for (int r = 0; r < 5; r++) {
                double ref[6];
                test_naive_row(la, idx[r], ref);
                for (int j = 0; j < 6; j++) cr_assert(le(dbl, fabs(ref[j] - oa[r * 6 + j]), 1e-5));
            }
        for (int e = 0; e < 30; e++) g[e] = oa[e] - 0.1f * (float)e;
        cr_assert(eq(int, fpd_engine_backward(ea, &b, g, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_backward(eb, &b, g, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_step(ea, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_step(eb, &err), 0), "%s", err.msg);
    }
    for (int32_t m = 0; m < 3; m++)
        cr_assert(eq(int, memcmp(fpd_layer_core_const(la, m), fpd_layer_core_const(lb, m),
                                 (size_t)fpd_layer_shape_core_numel(&s, m) * 4),
                     0),
                  "core %d differs", m);
    fpd_engine_free(ea);
    fpd_engine_free(eb);
    fpd_backend_free(cuda);
    FILE *f = fopen(log, "r");
    char line[256] = "";
    cr_assert(ne(ptr, fgets(line, sizeof line, f), NULL));
    fclose(f);
    unlink(log);
    cr_assert(eq(str, line, "fakecuda device=0 forward=3 backward=3 step=3\n"));
    fpd_layer_free(la);
    fpd_layer_free(lb);
}

Test(backend_registry, object_without_engine) {
    use_fake("ok");
    setenv("FPD_FAKE_CUDA_NO_ENGINE", "1", 1);
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), 0), "%s", err.msg);
    cr_assert(not(fpd_backend_has_engine(be)));
    struct fpd_layer_shape s = {.rows = 8, .dim = 2, .k = 2, .terms = 1, .row_shape = {4, 2},
                                .col_shape = {1, 2}, .ranks = {1, 2, 1}};
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    struct fpd_engine_params p = fpd_engine_default_params();
    p.backend = be;
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, &p, &e, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(ne(ptr, strstr(err.msg, "has no FPD engine operations"), NULL), "%s", err.msg);
    fpd_layer_free(l);
    fpd_backend_free(be);
}

/* Without $FPD_CUDA_BACKEND: a build without CUDA says so; a build with it
 * finds build/libfpd-cuda.so next to this binary, and on a machine without a GPU
 * reports no device (the object loads: the CUDA runtime is linked into it). */
Test(backend_registry, real_cuda_object_or_not_built) {
    unsetenv("FPD_CUDA_BACKEND");
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    char where[8192];
    fpd__cuda_backend_search_path(where, sizeof where);
    if (!strstr(fpd_build_features(), "cuda-backend=")) {
        cr_assert(eq(str, where, ""));
        cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_UNSUPPORTED));
        cr_assert(eq(str, err.msg, "this build has no CUDA backend; rebuild with make CUDA=1"));
        return;
    }
    cr_assert(ne(ptr, strstr(where, "/libfpd-cuda.so"), NULL), "%s", where);
    cr_assert(not(mapped("libcudart")), "CUDA loaded before it was asked for");
    const char *next_to_me = build_file("libfpd-cuda.so");
    char feat[8192];
    snprintf(feat, sizeof feat, "cuda-backend=%s (not loaded)", next_to_me);
    cr_assert(ne(ptr, strstr(fpd_build_features(), feat), NULL), "%s", fpd_build_features());
    if (fpd_backend_available(FPD_BACKEND_KIND_CUDA)) {
        cr_assert(mapped("libcudart"));
        cr_skip_test("a CUDA device is present: covered by backend/cuda_ops_match_naive");
    }
    cr_assert(mapped("libfpd-cuda.so"));
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err), FPD_STATUS_BACKEND));
    cr_assert(ne(ptr, strstr(err.msg, "no CUDA device"), NULL), "%s", err.msg);
}

/* A CPU run never loads a CUDA library. */
Test(backend_registry, cpu_run_loads_no_cuda) {
    unsetenv("FPD_CUDA_BACKEND");
    struct fpd_layer_shape s = {.rows = 8, .dim = 2, .k = 2, .terms = 1, .row_shape = {4, 2},
                                .col_shape = {1, 2}, .ranks = {1, 2, 1}};
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0));
    int64_t idx[2] = {1, 7};
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 2, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    float out[4];
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0));
    (void)fpd_build_features();
    fpd_engine_free(e);
    fpd_layer_free(l);
    cr_assert(not(mapped("libcudart")));
    cr_assert(not(mapped("libfpd-cuda")));
}

/* ALS with a backend (fpd_fit_params.backend): the right-hand sides' backward
 * passes run on it, on an engine remade after every core update; through the
 * fake object the cores and the objective are the CPU's exactly, and the
 * objective is ||W - What||^2 recomputed from the definition. */
Test(backend_registry, als_through_the_object_equals_cpu) {
    use_fake("ok");
    char log[] = "/tmp/fpd-test-alslog-XXXXXX";
    int fd = mkstemp(log);
    cr_assert(ge(int, fd, 0));
    close(fd);
    setenv("FPD_FAKE_CUDA_LOG", log, 1);
    struct fpd_layer_shape s = {.rows = 64, .dim = 6, .k = 3, .terms = 1, .row_shape = {4, 4, 4},
                                .col_shape = {1, 2, 3}, .ranks = {1, 3, 3, 1}};
    struct fpd_error err;
    uint64_t seed = 99;
    float *w = malloc(64 * 6 * sizeof(float));
    for (int e = 0; e < 64 * 6; e++) w[e] = (float)test_rand_sym(&seed);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, 64, 6};
    struct fpd_layer *la = NULL, *lb = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &la, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_init(&s, &lb, &err), 0), "%s", err.msg);
    test_fill_random(la, 7, 0.5);
    test_fill_random(lb, 7, 0.5);
    struct fpd_backend *cuda = NULL;
    cr_assert(eq(int, fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &cuda, &err), 0), "%s", err.msg);
    struct fpd_fit_params pa = fpd_fit_default_params(), pb = pa;
    pb.backend = cuda;
    double fa = 0, fb = 0;
    int64_t ra = 0, rb = 0;
    cr_assert(eq(int, fpd_als(la, &v, 3, 0.0, &pa, &fa, &ra, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_als(lb, &v, 3, 0.0, &pb, &fb, &rb, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, ra, 3));
    cr_assert(eq(i64, rb, 3));
    cr_assert(eq(dbl, fa, fb));
    for (int32_t m = 0; m < 3; m++)
        cr_assert(eq(int, memcmp(fpd_layer_core_const(la, m), fpd_layer_core_const(lb, m),
                                 (size_t)fpd_layer_shape_core_numel(&s, m) * 4),
                     0),
                  "core %d differs", m);
    double ref = 0;
    for (int64_t r = 0; r < 64; r++) {
        double row[6];
        test_naive_row(lb, r, row);
        for (int j = 0; j < 6; j++) ref += (row[j] - w[r * 6 + j]) * (row[j] - w[r * 6 + j]);
    }
    cr_assert(le(dbl, fabs(fb - ref), 1e-4 * ref + 1e-9), "objective %g, by the definition %g", fb, ref);
    fpd_backend_free(cuda);
    FILE *f = fopen(log, "r");
    char line[256] = "";
    cr_assert(ne(ptr, fgets(line, sizeof line, f), NULL));
    fclose(f);
    unlink(log);
    /* 3 sweeps x 3 cores, one 64-row block each: 9 forwards and backwards, no steps */
    cr_assert(eq(str, line, "fakecuda device=0 forward=9 backward=9 step=0\n"));
    fpd_layer_free(la);
    fpd_layer_free(lb);
    free(w);
}
