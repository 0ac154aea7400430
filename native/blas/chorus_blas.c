// Row-major float32 GEMM for the tensor engine, computed by the machine's BLAS (OpenBLAS from the
// distribution). The library is opened at run time with dlopen, so building needs only a C compiler
// and Node's headers, and a machine without a BLAS still loads this addon (available() is false).
//
// The engine's tensors live in one WebAssembly memory; JavaScript passes that ArrayBuffer and byte
// offsets, and the product is written in place: no copies in or out.
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

static void *library = NULL;
static sgemm_fn sgemm = NULL;
static set_threads_fn set_threads = NULL;
static get_threads_fn get_threads = NULL;
static get_config_fn get_config = NULL;
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

// gemm(memory, aOffset, bOffset, cOffset, batch, m, n, k, transposeA, transposeB, aStride, bStride)
// C[i] = op(A[i]) · op(B[i]) for i < batch; A[i] starts aStride floats after A[i-1] (0 broadcasts),
// likewise B; C is dense [batch, m, n].
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 12)
    return throw_error(env, "gemm: expected 12 arguments");
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
  if (napi_get_value_bool(env, argv[8], &trans_a) != napi_ok || napi_get_value_bool(env, argv[9], &trans_b) != napi_ok)
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

static napi_value describe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  napi_create_object(env, &result);
  napi_get_boolean(env, sgemm != NULL, &value);
  napi_set_named_property(env, result, "available", value);
  napi_create_string_utf8(env, library_name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "library", value);
  napi_create_string_utf8(env, load_error, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "error", value);
  napi_create_string_utf8(env, get_config ? get_config() : "", NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "config", value);
  napi_create_int32(env, get_threads ? get_threads() : 0, &value);
  napi_set_named_property(env, result, "threads", value);
  return result;
}

static napi_value set_thread_count(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t n = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1)
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
  };
  napi_define_properties(env, exports, 3, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
