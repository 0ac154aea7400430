// Row-major float32 GEMM for the tensor engine, and the float64 Householder QR of the merge library,
// computed by the machine's BLAS and LAPACK (OpenBLAS from the distribution carries both). The
// library is opened at run time with dlopen, so building needs only a C compiler and Node's
// headers, and a machine without a BLAS still loads this addon (available() is false).
//
// The engine's tensors live in one WebAssembly memory; JavaScript passes that ArrayBuffer and byte
// offsets, and the product is written in place: no copies in or out. The QR works in place on a
// Float64Array that JavaScript owns.
#include <dlfcn.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*get_config_fn)(void);
typedef char *(*get_corename_fn)(void);
typedef void (*scopy_fn)(int, const float *, int, float *, int);
typedef void (*saxpy_fn)(int, float, const float *, int, float *, int);
typedef double (*dsdot_fn)(int, const float *, int, const float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int, double,
                         double *, int);
// LAPACK's Fortran interface with 32-bit integers (LP64), as Debian's OpenBLAS builds it.
typedef void (*dgeqrf_fn)(const int *, const int *, double *, const int *, double *, double *, const int *, int *);
typedef void (*dorgqr_fn)(const int *, const int *, const int *, double *, const int *, const double *, double *,
                          const int *, int *);

static void *library = NULL;
static sgemm_fn sgemm = NULL;
static set_threads_fn set_threads = NULL;
static get_threads_fn get_threads = NULL;
static get_config_fn get_config = NULL;
static get_corename_fn get_corename = NULL;
static scopy_fn scopy = NULL;
static saxpy_fn saxpy = NULL;
static dsdot_fn dsdot = NULL;
static dgemm_fn dgemm = NULL;
static dgeqrf_fn dgeqrf = NULL;
static dorgqr_fn dorgqr = NULL;
static char library_name[512] = "";
static char load_error[1024] = "";

static void open_library(void) {
  // CHORUS_BLAS_LIBRARY names another CBLAS (MKL's runtime, BLIS); the defaults are OpenBLAS's
  // sonames on Debian and elsewhere.
  const char *wanted = getenv("CHORUS_BLAS_LIBRARY");
  const char *candidates[] = {wanted, "libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", NULL};
  size_t used = 0;
  for (int i = 0; i < 4; i++) {
    const char *name = candidates[i];
    if (name == NULL || name[0] == '\0') continue;
    void *handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
      const char *why = dlerror();
      used += snprintf(load_error + used, used < sizeof load_error ? sizeof load_error - used : 0, "%s%s",
                       used ? "; " : "", why ? why : name);
      if (used >= sizeof load_error) used = sizeof load_error - 1;
      continue;
    }
    sgemm_fn fn = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    if (fn == NULL) {
      used += snprintf(load_error + used, used < sizeof load_error ? sizeof load_error - used : 0,
                       "%s%s has no cblas_sgemm", used ? "; " : "", name);
      if (used >= sizeof load_error) used = sizeof load_error - 1;
      dlclose(handle);
      continue;
    }
    library = handle;
    sgemm = fn;
    set_threads = (set_threads_fn)dlsym(handle, "openblas_set_num_threads");
    get_threads = (get_threads_fn)dlsym(handle, "openblas_get_num_threads");
    get_config = (get_config_fn)dlsym(handle, "openblas_get_config");
    get_corename = (get_corename_fn)dlsym(handle, "openblas_get_corename");
    scopy = (scopy_fn)dlsym(handle, "cblas_scopy");
    saxpy = (saxpy_fn)dlsym(handle, "cblas_saxpy");
    dsdot = (dsdot_fn)dlsym(handle, "cblas_dsdot");
    dgemm = (dgemm_fn)dlsym(handle, "cblas_dgemm");
    // An ILP64 build (64-bit integers) would read our 32-bit sizes wrongly: no LAPACK from it.
    const char *config = get_config ? get_config() : "";
    if (config == NULL || strstr(config, "USE64BITINT") == NULL) {
      dgeqrf = (dgeqrf_fn)dlsym(handle, "dgeqrf_");
      dorgqr = (dorgqr_fn)dlsym(handle, "dorgqr_");
      if (dgeqrf == NULL || dorgqr == NULL) dgeqrf = NULL, dorgqr = NULL;
    }
    snprintf(library_name, sizeof library_name, "%s", name);
    return;
  }
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, "ERR_CHORUS_BLAS", message);
  return NULL;
}

static int read_int(napi_env env, napi_value value, int64_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return 0;
  if (d != d || d < 0 || d > 9007199254740991.0 || (double)(int64_t)d != d) return 0;
  *out = (int64_t)d;
  return 1;
}

// Exactly `want` arguments into argv; a wrong count is an error naming the call.
static bool take_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *message) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_error(env, "ERR_CHORUS_BLAS", message);
    return false;
  }
  return true;
}

static bool read_flags(napi_env env, napi_value a, napi_value b, bool *trans_a, bool *trans_b) {
  return napi_get_value_bool(env, a, trans_a) == napi_ok && napi_get_value_bool(env, b, trans_b) == napi_ok;
}

// gemm(memory, aOffset, bOffset, cOffset, batch, m, n, k, transposeA, transposeB, aStride, bStride)
// C[i] = op(A[i]) · op(B[i]) for i < batch; A[i] starts aStride floats after A[i-1] (0 broadcasts),
// likewise B; C is dense [batch, m, n].
static napi_value gemm(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!take_args(env, info, 12, argv, "gemm: expected 12 arguments")) return NULL;
  if (sgemm == NULL) return throw_error(env, "gemm: no BLAS library is loaded");
  bool is_buffer = false;
  napi_is_arraybuffer(env, argv[0], &is_buffer);
  if (!is_buffer) return throw_error(env, "gemm: memory must be an ArrayBuffer");
  void *data = NULL;
  size_t bytes = 0;
  if (napi_get_arraybuffer_info(env, argv[0], &data, &bytes) != napi_ok || data == NULL)
    return throw_error(env, "gemm: cannot read the memory buffer");
  int64_t v[11];
  for (int i = 0; i < 9; i++)
    if (!read_int(env, argv[i + 1 + (i >= 7 ? 2 : 0)], &v[i]))
      return throw_error(env, "gemm: offsets, sizes and strides must be non-negative integers");
  bool trans_a = false, trans_b = false;
  if (!read_flags(env, argv[8], argv[9], &trans_a, &trans_b))
    return throw_error(env, "gemm: transpose flags must be booleans");
  int64_t a_off = v[0], b_off = v[1], c_off = v[2], batch = v[3], m = v[4], n = v[5], k = v[6];
  int64_t a_stride = v[7], b_stride = v[8];
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return throw_error(env, "gemm: a dimension exceeds 2^31");
  if ((a_off | b_off | c_off) % 4 != 0) return throw_error(env, "gemm: offsets must be 4-byte aligned");
  // Bounds: every matrix read or written must lie inside the buffer. A bad call is an error, never
  // a read past the end of the engine's memory.
  const double limit = (double)bytes;
  double a_end = (double)a_off + 4.0 * ((double)(batch > 0 ? batch - 1 : 0) * (double)a_stride + (double)m * (double)k);
  double b_end = (double)b_off + 4.0 * ((double)(batch > 0 ? batch - 1 : 0) * (double)b_stride + (double)k * (double)n);
  double c_end = (double)c_off + 4.0 * (double)batch * (double)m * (double)n;
  if (a_end > limit || b_end > limit || c_end > limit) return throw_error(env, "gemm: a matrix lies outside the memory");
  if (batch == 0 || m == 0 || n == 0) return NULL;
  float *base = (float *)data;
  const float *a = base + a_off / 4;
  const float *b = base + b_off / 4;
  float *c = base + c_off / 4;
  if (k == 0) {
    memset(c, 0, (size_t)(batch * m * n) * sizeof(float));
    return NULL;
  }
  const int lda = trans_a ? (int)m : (int)k;
  const int ldb = trans_b ? (int)k : (int)n;
  for (int64_t i = 0; i < batch; i++)
    sgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)m, (int)n, (int)k, 1.0f,
          a + i * a_stride, lda, b + i * b_stride, ldb, 0.0f, c + i * m * n, (int)n);
  return NULL;
}

static int read_typed(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  void *raw = NULL;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, NULL, NULL) != napi_ok) return 0;
  if (type != want || (raw == NULL && *length > 0)) return 0;
  *data = raw;
  return 1;
}

// difference(tuned, base, out): out = tuned − base (float32, one rounding, as JavaScript's
// Math.fround(tuned − base)) and returns Σ out², accumulated in double (OpenBLAS's dsdot kernel rounds
// each product to float32 first: ~1e-10 relative on a long sum). Three Float32Arrays of one
// length; `out` may be a view of the engine's memory. BLAS's copy, axpy and dsdot, so it runs at memory speed.
static napi_value difference(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!take_args(env, info, 3, argv, "difference: expected 3 arguments")) return NULL;
  if (scopy == NULL || saxpy == NULL || dsdot == NULL)
    return throw_error(env, "difference: the loaded BLAS library lacks cblas_scopy, cblas_saxpy or cblas_dsdot");
  void *t = NULL, *b = NULL, *o = NULL;
  size_t tn = 0, bn = 0, on = 0;
  if (!read_typed(env, argv[0], napi_float32_array, &t, &tn) || !read_typed(env, argv[1], napi_float32_array, &b, &bn) ||
      !read_typed(env, argv[2], napi_float32_array, &o, &on))
    return throw_error(env, "difference: tuned, base and out must be Float32Arrays");
  if (tn != bn || tn != on) return throw_error(env, "difference: tuned, base and out differ in length");
  double total = 0;
  // BLAS counts in int: long arrays go in pieces.
  for (size_t start = 0; start < on; start += (size_t)1 << 30) {
    size_t left = on - start;
    int len = left > ((size_t)1 << 30) ? 1 << 30 : (int)left;
    float *out = (float *)o + start;
    scopy(len, (const float *)t + start, 1, out, 1);
    saxpy(len, -1.0f, (const float *)b + start, 1, out, 1);
    total += dsdot(len, out, 1, out, 1);
  }
  napi_value result;
  napi_create_double(env, total, &result);
  return result;
}

// dgemm(a, b, c, m, n, k, transposeA, transposeB): row-major float64 C (m×n) = op(A)·op(B) on three
// Float64Arrays that JavaScript owns, each checked to hold its matrix.
static napi_value dgemm_call(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!take_args(env, info, 8, argv, "dgemm: expected 8 arguments")) return NULL;
  if (dgemm == NULL) return throw_error(env, "dgemm: the loaded BLAS library has no cblas_dgemm");
  void *a = NULL, *b = NULL, *c = NULL;
  size_t an = 0, bn = 0, cn = 0;
  if (!read_typed(env, argv[0], napi_float64_array, &a, &an) || !read_typed(env, argv[1], napi_float64_array, &b, &bn) ||
      !read_typed(env, argv[2], napi_float64_array, &c, &cn))
    return throw_error(env, "dgemm: a, b and c must be Float64Arrays");
  int64_t m, n, k;
  if (!read_int(env, argv[3], &m) || !read_int(env, argv[4], &n) || !read_int(env, argv[5], &k))
    return throw_error(env, "dgemm: sizes must be non-negative integers");
  bool trans_a = false, trans_b = false;
  if (!read_flags(env, argv[6], argv[7], &trans_a, &trans_b))
    return throw_error(env, "dgemm: transpose flags must be booleans");
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return throw_error(env, "dgemm: a dimension exceeds 2^31");
  if ((double)an < (double)m * (double)k || (double)bn < (double)k * (double)n || (double)cn < (double)m * (double)n)
    return throw_error(env, "dgemm: an array holds fewer numbers than its matrix");
  if (m == 0 || n == 0) return NULL;
  if (k == 0) {
    memset(c, 0, (size_t)(m * n) * sizeof(double));
    return NULL;
  }
  dgemm(ROW_MAJOR, trans_a ? TRANS : NO_TRANS, trans_b ? TRANS : NO_TRANS, (int)m, (int)n, (int)k, 1.0, (const double *)a,
        trans_a ? (int)m : (int)k, (const double *)b, trans_b ? (int)k : (int)n, 0.0, (double *)c, (int)n);
  return NULL;
}

static int read_doubles(napi_env env, napi_value value, double **data, size_t *length) {
  return read_typed(env, value, napi_float64_array, (void **)data, length);
}

// qr(columns, len, count, r): thin Householder QR of the len×count matrix whose columns are the
// `count` vectors of `columns` (column-major with leading dimension len, which is LAPACK's layout).
// On return the first k = min(len, count) vectors of `columns` are the orthonormal columns of Q, and
// `r` (a Float64Array of k·count, or null) holds R row-major, zeros below the diagonal. Returns k.
static napi_value qr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!take_args(env, info, 4, argv, "qr: expected 4 arguments")) return NULL;
  if (dgeqrf == NULL) return throw_error(env, "qr: the loaded BLAS library has no LP64 LAPACK (dgeqrf_, dorgqr_)");
  double *a = NULL;
  size_t a_length = 0;
  if (!read_doubles(env, argv[0], &a, &a_length)) return throw_error(env, "qr: columns must be a Float64Array");
  int64_t len64, count64;
  if (!read_int(env, argv[1], &len64) || !read_int(env, argv[2], &count64))
    return throw_error(env, "qr: len and count must be non-negative integers");
  if (len64 > INT32_MAX || count64 > INT32_MAX || (double)len64 * (double)count64 > (double)INT32_MAX)
    return throw_error(env, "qr: the matrix exceeds 2^31 entries");
  if ((double)a_length < (double)len64 * (double)count64)
    return throw_error(env, "qr: columns holds fewer than len·count numbers");
  const int len = (int)len64, count = (int)count64, k = len < count ? len : count;
  double *r = NULL;
  size_t r_length = 0;
  napi_valuetype r_type;
  napi_typeof(env, argv[3], &r_type);
  if (r_type != napi_null && r_type != napi_undefined) {
    if (!read_doubles(env, argv[3], &r, &r_length)) return throw_error(env, "qr: r must be a Float64Array or null");
    if ((double)r_length < (double)k * (double)count) return throw_error(env, "qr: r holds fewer than k·count numbers");
  }
  napi_value result;
  if (k == 0) {
    napi_create_int32(env, 0, &result);
    return result;
  }
  // Workspace: LAPACK says how much it wants for this shape (lwork = -1 asks).
  int lwork = -1, info_code = 0;
  double query = 0, query_q = 0;
  dgeqrf(&len, &count, a, &len, NULL, &query, &lwork, &info_code);
  dorgqr(&len, &k, &k, a, &len, NULL, &query_q, &lwork, &info_code);
  double wanted = query > query_q ? query : query_q;
  lwork = wanted > k ? (int)wanted : k;
  double *tau = malloc(sizeof(double) * (size_t)k);
  double *work = malloc(sizeof(double) * (size_t)lwork);
  if (tau == NULL || work == NULL) {
    free(tau);
    free(work);
    return throw_error(env, "qr: out of memory for LAPACK's workspace");
  }
  dgeqrf(&len, &count, a, &len, tau, work, &lwork, &info_code);
  if (info_code == 0 && r != NULL) {
    for (int i = 0; i < k; i++)
      for (int c = 0; c < count; c++) r[(size_t)i * count + c] = c >= i ? a[(size_t)c * len + i] : 0.0;
  }
  if (info_code == 0) dorgqr(&len, &k, &k, a, &len, tau, work, &lwork, &info_code);
  free(tau);
  free(work);
  if (info_code != 0) return throw_error(env, "qr: LAPACK refused the matrix");
  napi_create_int32(env, k, &result);
  return result;
}

static napi_value describe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  napi_create_object(env, &result);
  napi_get_boolean(env, sgemm != NULL, &value);
  napi_set_named_property(env, result, "available", value);
  napi_get_boolean(env, dgeqrf != NULL, &value);
  napi_set_named_property(env, result, "lapack", value);
  napi_create_string_utf8(env, library_name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "library", value);
  napi_create_string_utf8(env, load_error, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "error", value);
  napi_create_string_utf8(env, get_config ? get_config() : "", NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "config", value);
  // The kernel OpenBLAS chose for this CPU, or was told to use by OPENBLAS_CORETYPE.
  napi_create_string_utf8(env, get_corename ? get_corename() : "", NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "kernel", value);
  napi_create_int32(env, get_threads ? get_threads() : 0, &value);
  napi_set_named_property(env, result, "threads", value);
  return result;
}

static napi_value set_thread_count(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t n = 0;
  if (!take_args(env, info, 1, argv, "setThreads: expected a positive integer")) return NULL;
  if (napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1)
    return throw_error(env, "setThreads: expected a positive integer");
  if (set_threads) set_threads(n);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  open_library();
  napi_property_descriptor props[] = {
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"describe", NULL, describe, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_thread_count, NULL, NULL, NULL, napi_default, NULL},
      {"qr", NULL, qr, NULL, NULL, NULL, napi_default, NULL},
      {"difference", NULL, difference, NULL, NULL, NULL, napi_default, NULL},
      {"dgemm", NULL, dgemm_call, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 6, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
