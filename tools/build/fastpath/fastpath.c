/*
 * The Go engine's request entry points, written by hand instead of generated
 * by gopy (tools/build/build_native.py compiles this file into the extension
 * and adds the functions below to gopy's method table of _pyext).
 *
 * Why: gopy's wrapper of pyext.Evaluate parses its arguments with
 * PyArg_ParseTupleAndKeywords, copies every identity into a new Go string
 * (C.GoString) and calls back into C twice from Go to release and re-take the
 * GIL; the Python side then decodes the packed int64 in bytecode. Here the
 * arguments are read with METH_FASTCALL, the identities cross as (pointer,
 * length) views of the str objects' UTF-8 buffers, the GIL is handled in C
 * (held for the memory backend), and the Decision is built in C
 * (docs/engine.md, "The fast entry").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Exported by fastpath_export.go (cgo). */
extern long long rlgo_evaluate(long long handle, char *user, long long userLen, char *server, long long serverLen,
                               char *tenant, long long tenantLen, char *tool, long long toolLen, long long nowUS);
extern long long rlgo_add(long long a, long long b);

PyObject *rl_fast_evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *rl_fast_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* Packed result layout (pyext.pack, docs/engine.md). */
#define RL_DIM_MASK 7
#define RL_VALUE_SHIFT 4
#define RL_VALUE_MASK ((1LL << 21) - 1)
#define RL_RESET_SHIFT 25
#define RL_TOOL_DIMENSION 3
#define RL_NONE_DIMENSION 4

/* The UTF-8 buffer of an identity, as the "s" converter of gopy's wrapper
 * would accept it: a str without NUL (ValueError) and without lone
 * surrogates (UnicodeEncodeError); the Python side then passes the escaped
 * form instead. The buffer belongs to the str object (cached in it for a
 * non-ASCII str) and lives as long as the object. */
static int rl_identity(PyObject *o, const char **p, Py_ssize_t *n) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an identity must be str, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(o, n);
    if (*p == NULL) {
        return -1;
    }
    if (*n > 0 && memchr(*p, 0, (size_t)*n) != NULL) {
        PyErr_SetString(PyExc_ValueError, "embedded null character");
        return -1;
    }
    return 0;
}

static int rl_int64(PyObject *o, long long *v) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "expected int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *v = PyLong_AsLongLong(o);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* ctx (engine_go.GoEngine.fast_context()): what rl_decision needs. */
enum {
    RL_CTX_TYPE,        /* the Decision class (a tuple subclass of 6 fields) */
    RL_CTX_NAMES,       /* dimension names by index: a tuple */
    RL_CTX_LIMITS,      /* limits by dimension index: a tuple */
    RL_CTX_TOOL_LIMITS, /* tool name as it crosses -> its limit: a dict */
    RL_CTX_NO_LIMIT,    /* the Decision of "no dimension applied" */
    RL_CTX_FALLBACK,    /* fallback(packed, tool): raises for an error code, else decodes */
    RL_CTX_HOLD_GIL,    /* True: keep the GIL during the call into Go (memory: bounded CPU work) */
    RL_CTX_SIZE
};

static int rl_ctx_ok(PyObject *ctx) { return PyTuple_CheckExact(ctx) && PyTuple_GET_SIZE(ctx) == RL_CTX_SIZE; }

/* The Decision of a packed result. Without a context (ctx not a tuple of
 * RL_CTX_SIZE, e.g. None) it returns the packed int itself; an error code
 * (negative), or a result it cannot build from ctx, goes to ctx's fallback,
 * which raises or decodes in Python. */
static PyObject *rl_decision(PyObject *ctx, long long packed, PyObject *tool) {
    if (!rl_ctx_ok(ctx)) {
        return PyLong_FromLongLong(packed);
    }
    long long dim = (packed >> 1) & RL_DIM_MASK;
    if (packed >= 0 && dim == RL_NONE_DIMENSION) {
        PyObject *none = PyTuple_GET_ITEM(ctx, RL_CTX_NO_LIMIT);
        Py_INCREF(none);
        return none;
    }
    PyObject *type = PyTuple_GET_ITEM(ctx, RL_CTX_TYPE);
    PyObject *names = PyTuple_GET_ITEM(ctx, RL_CTX_NAMES);
    PyObject *limits = PyTuple_GET_ITEM(ctx, RL_CTX_LIMITS);
    PyObject *tool_limits = PyTuple_GET_ITEM(ctx, RL_CTX_TOOL_LIMITS);
    PyObject *limit = NULL; /* borrowed */
    if (packed >= 0 && dim <= RL_TOOL_DIMENSION && PyType_Check(type) &&
        PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type) && PyTuple_CheckExact(names) &&
        PyTuple_GET_SIZE(names) > dim && PyTuple_CheckExact(limits) && PyTuple_GET_SIZE(limits) > dim) {
        if (dim != RL_TOOL_DIMENSION) {
            limit = PyTuple_GET_ITEM(limits, dim);
        } else if (PyDict_CheckExact(tool_limits)) {
            limit = PyDict_GetItemWithError(tool_limits, tool);
            if (limit == NULL && PyErr_Occurred()) {
                return NULL;
            }
        }
    }
    if (limit == NULL) {
        PyObject *p = PyLong_FromLongLong(packed);
        if (p == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(ctx, RL_CTX_FALLBACK), p, tool, NULL);
        Py_DECREF(p);
        return r;
    }
    PyObject *value = PyLong_FromLongLong((packed >> RL_VALUE_SHIFT) & RL_VALUE_MASK);
    PyObject *reset = value ? PyLong_FromLongLong(packed >> RL_RESET_SHIFT) : NULL;
    PyObject *zero = reset ? PyLong_FromLong(0) : NULL;
    PyTypeObject *t = (PyTypeObject *)type;
    PyObject *d = zero ? t->tp_alloc(t, 6) : NULL;
    if (d == NULL) {
        Py_XDECREF(value);
        Py_XDECREF(reset);
        Py_XDECREF(zero);
        return NULL;
    }
    int admitted = (int)(packed & 1);
    PyObject *adm = admitted ? Py_True : Py_False;
    PyObject *name = PyTuple_GET_ITEM(names, dim);
    Py_INCREF(adm);
    Py_INCREF(name);
    Py_INCREF(limit);
    /* (admitted, dimension, limit, remaining, reset_at_unix, retry_after_s) */
    PyTuple_SET_ITEM(d, 0, adm);
    PyTuple_SET_ITEM(d, 1, name);
    PyTuple_SET_ITEM(d, 2, limit);
    PyTuple_SET_ITEM(d, 3, admitted ? value : zero);
    PyTuple_SET_ITEM(d, 4, reset);
    PyTuple_SET_ITEM(d, 5, admitted ? zero : value);
    return d;
}

/* evaluate_fast(ctx, handle, user, server, tenant, tool, now_us) -> Decision | int
 *
 * pyext.Evaluate on views of the four identities. The GIL is released while
 * Go runs unless ctx says to hold it. Returns the Decision (rl_decision). */
PyObject *rl_fast_evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "evaluate_fast takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    long long handle, now_us;
    const char *id[4];
    Py_ssize_t n[4];
    if (rl_int64(args[1], &handle) < 0 || rl_int64(args[6], &now_us) < 0) {
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (rl_identity(args[2 + i], &id[i], &n[i]) < 0) {
            return NULL;
        }
    }
    long long packed;
    if (rl_ctx_ok(args[0]) && PyTuple_GET_ITEM(args[0], RL_CTX_HOLD_GIL) == Py_True) {
        /* Memory: a few hundred ns of CPU work that never waits for Python;
         * releasing and re-taking the GIL would cost a third of it. */
        packed = rlgo_evaluate(handle, (char *)id[0], n[0], (char *)id[1], n[1], (char *)id[2], n[2], (char *)id[3],
                               n[3], now_us);
    } else {
        Py_BEGIN_ALLOW_THREADS
        packed = rlgo_evaluate(handle, (char *)id[0], n[0], (char *)id[1], n[1], (char *)id[2], n[2], (char *)id[3],
                               n[3], now_us);
        Py_END_ALLOW_THREADS
    }
    return rl_decision(args[0], packed, args[5]);
}

/* add_fast(a, b) -> a + b: a call into Go that does no work, crossing the way
 * evaluate_fast does on the memory backend (FASTCALL, the GIL held): the
 * no-op of its kind. */
PyObject *rl_fast_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    long long a, b, r;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "add_fast takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (rl_int64(args[0], &a) < 0 || rl_int64(args[1], &b) < 0) {
        return NULL;
    }
    r = rlgo_add(a, b);
    return PyLong_FromLongLong(r);
}
