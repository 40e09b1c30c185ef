/*
 * backend.c - the backend registry: the CPU backend is linked in; the CUDA
 * backend is its own shared object (build/libfpd-cuda.so, `make CUDA=1`) that is
 * opened with dlopen the first time CUDA is asked for (fpd_backend_init,
 * fpd_backend_available, fpd_backend_init_best), as ggml's backend registry opens
 * its backends (ggml_backend_load: dlopen, one entry symbol, an API version
 * check). A CPU-only run never loads a CUDA library. The contract with the
 * object is in backend-impl.h ("Loadable backends").
 *
 * Where the CUDA backend object is looked for, first found wins:
 *   1. $FPD_CUDA_BACKEND, the path of the object (when set, only there; also in
 *      a build without CUDA, which is how the tests load a fake backend);
 *   2. the folder of libfpd.so, when libfpd is that shared library (dladdr);
 *   3. the folder of the running executable (/proc/self/exe): build/ for the tools;
 *   4. the install libdir FPD_LIBDIR ($(PREFIX)/lib when libfpd was built).
 * 2-4 only in a build with CUDA (FPD_USE_CUDA); without it, and without
 * $FPD_CUDA_BACKEND, CUDA is "not built". The outcome of the first load (the
 * plugin table, or the error) is kept for the life of the process (pthread_once);
 * the object is never closed.
 */
#include "backend-impl.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#ifndef FPD_LIBDIR
#define FPD_LIBDIR "/usr/local/lib"
#endif
#define CUDA_BACKEND_FILE "libfpd-cuda.so"

/* ------------------------------------------------------------- host table */

static enum fpd_status host_verr(struct fpd_error *err, enum fpd_status status, const char *fmt, va_list ap) {
    if (err) {
        err->status = status;
        err->line = err->column = 0;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return status;
}

static void host_vlog(enum fpd_log_level level, const char *fmt, va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fpd__log(level, "%s", buf);
}

static const struct fpd_backend_host g_host = {
    .abi_version = FPD_BACKEND_ABI_VERSION,
    .version = FPD_VERSION_STRING,
    .verr = host_verr,
    .vlog = host_vlog,
    .malloc = fpd_malloc,
    .free = fpd_free,
    .layer_get_shape = fpd_layer_get_shape,
    .layer_core = fpd_layer_core,
    .layer_core_const = fpd_layer_core_const,
    .layer_row_perm = fpd_layer_row_perm,
    .layer_get_free_coords = fpd_layer_get_free_coords,
    .layer_get_free_e = fpd_layer_get_free_e,
    .layer_get_free_e_const = fpd_layer_get_free_e_const,
    .layer_get_free_p = fpd_layer_get_free_p,
    .layer_get_free_p_const = fpd_layer_get_free_p_const,
    .layer_shape_core_numel = fpd_layer_shape_core_numel,
    .bag_batch_out_rows = fpd_bag_batch_out_rows,
    .adam_update = fpd__adam_update,
    .free_fake_quant_row = fpd__free_fake_quant_row,
    .layer_get_free_stored = fpd_layer_get_free_stored,
    .layer_free_row = fpd_layer_free_row,
};

/* ------------------------------------------------------------- loading */

static const char *const abi_struct_names[FPD_ABI_COUNT] = {
    "struct fpd_backend",       "struct fpd_backend_i", "struct fpd_engine_params",
    "struct fpd_optimizer_params", "struct fpd_bag_batch", "struct fpd_layer_shape",
    "struct fpd_error",         "struct fpd_backend_host", "struct fpd_backend_plugin",
};

enum fpd_status fpd__backend_plugin_open(const char *path, const struct fpd_backend_plugin **out,
                                         struct fpd_error *err) {
    *out = NULL;
    if (access(path, F_OK) != 0)
        return fpd__err(err, FPD_STATUS_IO, "backend object %s: no such file", path);
    /* RTLD_LOCAL: the object's symbols stay out of the global scope; RTLD_NOW:
     * an unresolved symbol fails here, not in the middle of a run */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return fpd__err(err, FPD_STATUS_BACKEND, "cannot load the backend object: %s", why ? why : path);
    }
    dlerror();
    void *sym = dlsym(h, FPD_BACKEND_PLUGIN_SYMBOL);
    if (!sym) {
        dlclose(h);
        return fpd__err(err, FPD_STATUS_BACKEND, "%s is not an libfpd backend object: it has no %s", path,
                        FPD_BACKEND_PLUGIN_SYMBOL);
    }
    fpd_backend_plugin_init_fn init;
    memcpy(&init, &sym, sizeof init); /* object pointer to function pointer (POSIX dlsym) */
    const struct fpd_backend_plugin *pl = init(&g_host);
    if (!pl) {
        dlclose(h);
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s refused this libfpd (backend ABI version %d): the object was built for another "
                        "libfpd; rebuild it (make CUDA=1)",
                        path, FPD_BACKEND_ABI_VERSION);
    }
    if (pl->abi_version != FPD_BACKEND_ABI_VERSION) {
        uint32_t v = pl->abi_version;
        dlclose(h);
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s has backend ABI version %u, this libfpd needs %d: a stale build; rebuild it (make "
                        "CUDA=1)",
                        path, (unsigned)v, FPD_BACKEND_ABI_VERSION);
    }
    const size_t sizes[FPD_ABI_COUNT] = FPD_BACKEND_ABI_SIZES;
    for (int i = 0; i < FPD_ABI_COUNT; i++)
        if (pl->sizes[i] != sizes[i]) {
            uint32_t theirs = pl->sizes[i];
            dlclose(h);
            return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                            "%s was built with another layout of %s (%u bytes, this libfpd has %zu): a stale "
                            "build; rebuild it (make CUDA=1)",
                            path, abi_struct_names[i], (unsigned)theirs, sizes[i]);
        }
    if (pl->kind != FPD_BACKEND_KIND_CUDA || !pl->device_count || !pl->create) {
        dlclose(h);
        return fpd__err(err, FPD_STATUS_BACKEND, "%s: its backend table is incomplete (kind %d)", path,
                        (int)pl->kind);
    }
    *out = pl; /* h stays open for the life of the process */
    return FPD_STATUS_OK;
}

#ifdef FPD_USE_CUDA
/* paths[*n++] = the folder of file + "/libfpd-cuda.so" (when it fits). */
static void add_dir_candidate(char paths[][PATH_MAX], int *n, int max, const char *file) {
    const char *slash = strrchr(file, '/');
    if (!slash || *n >= max) return;
    size_t dir = (size_t)(slash - file);
    if (dir + sizeof "/" CUDA_BACKEND_FILE > PATH_MAX) return;
    memcpy(paths[*n], file, dir);
    memcpy(paths[*n] + dir, "/" CUDA_BACKEND_FILE, sizeof "/" CUDA_BACKEND_FILE);
    (*n)++;
}
#endif

/* Candidate paths (see the top of the file) into paths[], returns how many. */
static int cuda_candidates(char paths[][PATH_MAX], int max) {
    int n = 0;
    const char *env = getenv("FPD_CUDA_BACKEND");
    if (env && *env) {
        snprintf(paths[n++], PATH_MAX, "%s", env);
        return n;
    }
#ifdef FPD_USE_CUDA
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) exe[len] = '\0';
    else exe[0] = '\0';
    /* the object libfpd's code is in (libfpd.so, or the executable it is linked
     * into): dladdr wants an object pointer, so the address of a static one */
    static const char anchor;
    Dl_info info;
    if (dladdr(&anchor, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        char lib[PATH_MAX];
        if (realpath(info.dli_fname, lib) && strcmp(lib, exe) != 0) add_dir_candidate(paths, &n, max, lib);
    }
    if (exe[0]) add_dir_candidate(paths, &n, max, exe);
    add_dir_candidate(paths, &n, max, FPD_LIBDIR "/" CUDA_BACKEND_FILE);
#else
    (void)max;
#endif
    return n;
}

const char *fpd__cuda_backend_search_path(char *buf, size_t len) {
    char paths[4][PATH_MAX];
    int n = cuda_candidates(paths, 4);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? "; " : "", paths[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

/* The first load's outcome, for the life of the process. */
static struct {
    pthread_once_t once;
    const struct fpd_backend_plugin *plugin;
    char path[PATH_MAX];
    int devices;
    struct fpd_error load_err;   /* why plugin is NULL */
    struct fpd_error device_err; /* why devices is 0 */
    bool done;                   /* the load was tried (set last, release) */
} g_cuda = {.once = PTHREAD_ONCE_INIT};

static void cuda_load(void) {
    struct fpd_error *err = &g_cuda.load_err;
    char paths[4][PATH_MAX];
    int n = cuda_candidates(paths, 4);
    if (n == 0) {
        fpd__err(err, FPD_STATUS_UNSUPPORTED, "this build has no CUDA backend; rebuild with make CUDA=1");
        return;
    }
    int found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (access(paths[i], F_OK) == 0) found = i;
    if (found < 0) {
        char where[4 * PATH_MAX];
        fpd__cuda_backend_search_path(where, sizeof where);
        if (getenv("FPD_CUDA_BACKEND") && *getenv("FPD_CUDA_BACKEND"))
            fpd__err(err, FPD_STATUS_UNSUPPORTED, "the CUDA backend object %s (FPD_CUDA_BACKEND) does not exist",
                     paths[0]);
        else
            fpd__err(err, FPD_STATUS_UNSUPPORTED,
                     "the CUDA backend object " CUDA_BACKEND_FILE " was not found (looked in: %.1200s); set "
                     "FPD_CUDA_BACKEND to its path",
                     where);
        return;
    }
    memcpy(g_cuda.path, paths[found], sizeof g_cuda.path); /* both PATH_MAX, NUL-terminated */
    if (fpd__backend_plugin_open(g_cuda.path, &g_cuda.plugin, err)) return;
    fpd__err_clear(&g_cuda.device_err);
    g_cuda.devices = g_cuda.plugin->device_count(&g_cuda.device_err);
    if (g_cuda.devices <= 0) {
        g_cuda.devices = 0;
        if (!g_cuda.device_err.msg[0])
            fpd__err(&g_cuda.device_err, FPD_STATUS_BACKEND, "no CUDA device: the driver reports none");
    }
}

static void cuda_load_once(void) {
    cuda_load();
    __atomic_store_n(&g_cuda.done, true, __ATOMIC_RELEASE); /* for fpd_build_features */
}

/* The CUDA plugin, loading it on the first call; NULL with err set on failure. */
static const struct fpd_backend_plugin *cuda_plugin(struct fpd_error *err) {
    pthread_once(&g_cuda.once, cuda_load_once);
    if (!g_cuda.plugin) {
        if (err) *err = g_cuda.load_err;
        return NULL;
    }
    return g_cuda.plugin;
}

/* ------------------------------------------------------------- API */

bool fpd_backend_available(enum fpd_backend_kind kind) {
    switch (kind) {
    case FPD_BACKEND_KIND_CPU:
        return true;
    case FPD_BACKEND_KIND_CUDA:
        return cuda_plugin(NULL) && g_cuda.devices > 0;
    default:
        return false;
    }
}

static enum fpd_status cuda_create(struct fpd_backend *be, int device, struct fpd_error *err) {
    const struct fpd_backend_plugin *pl = cuda_plugin(err);
    if (!pl) return err ? err->status : FPD_STATUS_UNSUPPORTED;
    if (g_cuda.devices == 0) {
        if (err) *err = g_cuda.device_err;
        return FPD_STATUS_BACKEND;
    }
    if (device < 0 || device >= g_cuda.devices)
        return fpd__err(err, FPD_STATUS_BACKEND, "no CUDA device %d (%d found)", device, g_cuda.devices);
    enum fpd_status st = pl->create(be, device, err);
    if (st) return st;
    be->kind = FPD_BACKEND_KIND_CUDA;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_backend_init(enum fpd_backend_kind kind, int device, struct fpd_backend **out,
                                 struct fpd_error *err) {
    *out = NULL;
    struct fpd_backend *be = fpd_calloc(1, sizeof *be);
    if (!be) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a backend");
    enum fpd_status st;
    be->kind = kind;
    switch (kind) {
    case FPD_BACKEND_KIND_CPU:
        st = fpd__cpu_backend_create(be, err);
        break;
    case FPD_BACKEND_KIND_CUDA:
        st = cuda_create(be, device, err);
        break;
    default:
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown backend kind %d", (int)kind);
    }
    if (st) {
        fpd_free(be);
        return st;
    }
    *out = be;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_backend_init_best(struct fpd_backend **out, struct fpd_error *err) {
    if (fpd_backend_available(FPD_BACKEND_KIND_CUDA) && fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, out, NULL) == 0)
        return FPD_STATUS_OK;
    return fpd_backend_init(FPD_BACKEND_KIND_CPU, 0, out, err);
}

const char *fpd_backend_name(const struct fpd_backend *be) { return be->name; }

enum fpd_backend_kind fpd_backend_get_kind(const struct fpd_backend *be) { return be->kind; }

bool fpd_backend_has_engine(const struct fpd_backend *be) {
    const struct fpd_backend_i *i = &be->iface;
    return i->engine_create && i->engine_forward && i->engine_backward && i->engine_step && i->engine_grad &&
           i->engine_zero_grad && i->engine_destroy;
}

int fpd_backend_device_count(enum fpd_backend_kind kind, struct fpd_error *err) {
    if (kind == FPD_BACKEND_KIND_CPU) return 1;
    if (kind != FPD_BACKEND_KIND_CUDA) {
        fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown backend kind %d", (int)kind);
        return 0;
    }
    if (!cuda_plugin(err)) return 0;
    if (g_cuda.devices == 0 && err) *err = g_cuda.device_err;
    return g_cuda.devices;
}

void fpd_backend_free(struct fpd_backend *be) {
    if (!be) return;
    if (be->iface.destroy) be->iface.destroy(be->ctx);
    fpd_free(be);
}

const struct fpd_backend_i *fpd__backend_iface(const struct fpd_backend *be, void **ctx) {
    if (ctx) *ctx = be->ctx;
    return &be->iface;
}

/* ------------------------------------------------------------- features */

const char *fpd_build_features(void) {
    static _Thread_local char buf[PATH_MAX + 700];
    int w = snprintf(buf, sizeof buf, "cpu openblas lapacke");
    char paths[4][PATH_MAX];
    int n = cuda_candidates(paths, 4);
    if (n == 0) return buf; /* no CUDA backend in this build */
    int found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (access(paths[i], F_OK) == 0) found = i;
    const char *state;
    char detail[600];
    /* whether it loads: only said once something asked for CUDA (loading it here
     * would cost every --version the CUDA libraries) */
    if (!__atomic_load_n(&g_cuda.done, __ATOMIC_ACQUIRE)) state = "not loaded";
    else if (!g_cuda.plugin) {
        snprintf(detail, sizeof detail, "does not load: %.500s", g_cuda.load_err.msg);
        state = detail;
    } else {
        snprintf(detail, sizeof detail, "loaded, %d device%s", g_cuda.devices, g_cuda.devices == 1 ? "" : "s");
        state = detail;
    }
    if (found < 0)
        snprintf(buf + w, sizeof buf - (size_t)w, " cuda-backend=%s", getenv("FPD_CUDA_BACKEND") ? "missing" : "not-found");
    else
        snprintf(buf + w, sizeof buf - (size_t)w, " cuda-backend=%.4000s (%s)", paths[found], state);
    return buf;
}
