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
 * (docs/engine.md, "The fast entries").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Exported by fastpath_export.go (cgo). */
extern long long rlgo_evaluate(long long handle, char *user, long long userLen, char *server, long long serverLen,
                               char *tenant, long long tenantLen, char *tool, long long toolLen, long long nowUS);
extern long long rlgo_submit(long long handle, char *user, long long userLen, char *server, long long serverLen,
                             char *tenant, long long tenantLen, char *tool, long long toolLen, long long nowUS);
extern long long rlgo_add(long long a, long long b);

PyObject *rl_fast_evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames);
PyObject *rl_fast_submit(PyObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames);
PyObject *rl_fast_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* Packed result layout (pyext.pack, docs/engine.md). */
#define RL_DIM_MASK 7
#define RL_VALUE_SHIFT 4
#define RL_VALUE_MASK ((1LL << 21) - 1)
#define RL_RESET_SHIFT 25
#define RL_TOOL_DIMENSION 3
#define RL_NONE_DIMENSION 4

/* The bytes in which an identity crosses (docs/engine.md, "Identities that
 * cannot cross as C strings"): "" for None (when allowed) or "", the str's
 * own UTF-8 buffer when it starts at or above U+0002 and holds no NUL and no
 * lone surrogate (the common case: no copy, no call), else the UTF-8 of
 * wire(o), engine_go.wire_identity, a new str returned in *owned for the
 * caller to release after the call into Go. A str's UTF-8 buffer belongs to
 * it (cached in it for a non-ASCII str) and lives as long as the object. */
static int rl_wire(PyObject *wire, PyObject *o, int none_ok, const char **p, Py_ssize_t *n, PyObject **owned) {
    *owned = NULL;
    if (o == Py_None && none_ok) {
        *p = "";
        *n = 0;
        return 0;
    }
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an identity must be str, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    if (PyUnicode_GET_LENGTH(o) == 0) {
        *p = "";
        *n = 0;
        return 0;
    }
    if (PyUnicode_READ_CHAR(o, 0) >= 2) {
        *p = PyUnicode_AsUTF8AndSize(o, n);
        if (*p != NULL && memchr(*p, 0, (size_t)*n) == NULL) {
            return 0;
        }
        if (*p == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                return -1;
            }
            PyErr_Clear(); /* a lone surrogate: the wire form escapes it */
        }
    }
    PyObject *w = PyObject_CallOneArg(wire, o);
    if (w == NULL) {
        return -1;
    }
    if (!PyUnicode_Check(w)) {
        Py_DECREF(w);
        PyErr_SetString(PyExc_TypeError, "wire_identity must return a str");
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(w, n);
    if (*p == NULL || memchr(*p, 0, (size_t)*n) != NULL) {
        Py_DECREF(w);
        if (*p != NULL) {
            PyErr_SetString(PyExc_ValueError, "wire_identity returned a str with NUL");
        }
        return -1;
    }
    *owned = w;
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
    RL_CTX_WIRE,        /* wire(identity): engine_go.wire_identity, for identities that need it */
    RL_CTX_MAX_TICKET,  /* pyext.MaxTicket (an int): submit_fast's results at or below it are tickets */
    RL_CTX_SIZE
};

static int rl_ctx_ok(PyObject *ctx) { return PyTuple_CheckExact(ctx) && PyTuple_GET_SIZE(ctx) == RL_CTX_SIZE; }

/* The int of a reset time (Unix seconds). Consecutive results share it (every
 * key of a fixed window resets at the same boundary), so the last one is
 * kept and reused: ints are immutable. Only called with the GIL held, which
 * guards the two statics. */
static long long rl_last_reset = -1;
static PyObject *rl_last_reset_obj = NULL;

static PyObject *rl_reset(long long reset) {
    if (reset != rl_last_reset || rl_last_reset_obj == NULL) {
        PyObject *o = PyLong_FromLongLong(reset);
        if (o == NULL) {
            return NULL;
        }
        Py_XSETREF(rl_last_reset_obj, o);
        rl_last_reset = reset;
    }
    Py_INCREF(rl_last_reset_obj);
    return rl_last_reset_obj;
}

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
    PyObject *reset = value ? rl_reset(packed >> RL_RESET_SHIFT) : NULL;
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
    /* Its items are a bool, a str and ints: it can be part of no reference
     * cycle, so the cyclic GC need not follow it (CPython drops such plain
     * tuples from the GC lazily; it does not for a subclass). */
    PyObject_GC_UnTrack(d);
    return d;
}

/* evaluate_fast(ctx, handle, user, tenant, tool, now_us=0, server=None) -> Decision
 *
 * GoEngine.evaluate's signature after (ctx, handle), so that the engine's
 * evaluate is functools.partial(evaluate_fast, ctx, handle): no Python frame
 * per request. pyext.Evaluate runs on views of the identities' bytes
 * (rl_wire). The GIL is released while Go runs unless ctx says to hold it.
 * Returns the Decision (rl_decision); with ctx None, the packed int.
 *
 * submit_fast(ctx, handle, user, tenant, tool, now_us=0, server=None) -> Decision or int
 *
 * The same arguments for pyext.Submit, which never waits (the GIL stays
 * held): the Decision when Submit answered at once (no I/O needed, §12),
 * else the ticket (an int <= ctx's MaxTicket) for GoEngine.check to await;
 * an error code raises through ctx's fallback. With ctx None, Submit's int. */
static const char *const rl_names[] = {"user", "tenant", "tool", "now_us", "server"};
enum { RL_USER, RL_TENANT, RL_TOOL, RL_NOW, RL_SERVER, RL_NSLOTS };

static PyObject *rl_fast_request(int submit, const char *fname, PyObject *const *args, Py_ssize_t nargsf,
                                 PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *slot[RL_NSLOTS] = {NULL, NULL, NULL, NULL, NULL};
    if (nargs < 2 || nargs > 2 + RL_NSLOTS) {
        PyErr_Format(PyExc_TypeError, "%s takes 2 to %d positional arguments (%zd given)", fname, 2 + RL_NSLOTS,
                     nargs);
        return NULL;
    }
    for (Py_ssize_t i = 2; i < nargs; i++) {
        slot[i - 2] = args[i];
    }
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        int k = 0;
        while (k < RL_NSLOTS && PyUnicode_CompareWithASCIIString(key, rl_names[k]) != 0) {
            k++;
        }
        if (k == RL_NSLOTS || slot[k] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s: unexpected or repeated argument %R", fname, key);
            return NULL;
        }
        slot[k] = args[nargs + j];
    }
    if (slot[RL_USER] == NULL || slot[RL_TENANT] == NULL || slot[RL_TOOL] == NULL) {
        PyErr_Format(PyExc_TypeError, "%s needs user, tenant and tool", fname);
        return NULL;
    }
    PyObject *ctx = args[0];
    int has_ctx = rl_ctx_ok(ctx);
    PyObject *wire = has_ctx ? PyTuple_GET_ITEM(ctx, RL_CTX_WIRE) : NULL;
    long long handle, now_us = 0;
    if (rl_int64(args[1], &handle) < 0 || (slot[RL_NOW] != NULL && rl_int64(slot[RL_NOW], &now_us) < 0)) {
        return NULL;
    }
    /* In pyext.Evaluate's order: user, server, tenant, tool. */
    PyObject *in[4] = {slot[RL_USER], slot[RL_SERVER] ? slot[RL_SERVER] : Py_None, slot[RL_TENANT], slot[RL_TOOL]};
    const char *id[4];
    Py_ssize_t n[4];
    PyObject *owned[4] = {NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    for (int i = 0; i < 4; i++) {
        if (wire == NULL) { /* no context: what gopy's "s" converter accepts, None as "" */
            if (in[i] == Py_None && i > 0) {
                id[i] = "";
                n[i] = 0;
                continue;
            }
            if (!PyUnicode_Check(in[i])) {
                PyErr_Format(PyExc_TypeError, "an identity must be str, not %.100s", Py_TYPE(in[i])->tp_name);
                goto done;
            }
            id[i] = PyUnicode_AsUTF8AndSize(in[i], &n[i]);
            if (id[i] == NULL) {
                goto done;
            }
            if (memchr(id[i], 0, (size_t)n[i]) != NULL) {
                PyErr_SetString(PyExc_ValueError, "embedded null character");
                goto done;
            }
        } else if (rl_wire(wire, in[i], i > 0, &id[i], &n[i], &owned[i]) < 0) {
            goto done;
        }
    }
    long long packed;
    if (submit) {
        /* Submit never waits: at most a few map lookups and starting a goroutine. */
        packed = rlgo_submit(handle, (char *)id[0], n[0], (char *)id[1], n[1], (char *)id[2], n[2], (char *)id[3],
                             n[3], now_us);
        long long max_ticket = 0;
        if (packed < 0 && has_ctx && rl_int64(PyTuple_GET_ITEM(ctx, RL_CTX_MAX_TICKET), &max_ticket) < 0) {
            goto done;
        }
        if (packed < 0 && (!has_ctx || packed <= max_ticket)) {
            result = PyLong_FromLongLong(packed); /* a ticket to await (or, without ctx, any result) */
            goto done;
        }
    } else if (has_ctx && PyTuple_GET_ITEM(ctx, RL_CTX_HOLD_GIL) == Py_True) {
        /* Memory: a few hundred ns of CPU work that never waits for Python;
         * releasing and re-taking the GIL would be a visible share of a call
         * this short (docs/engine.md, "The fast entries"). */
        packed = rlgo_evaluate(handle, (char *)id[0], n[0], (char *)id[1], n[1], (char *)id[2], n[2], (char *)id[3],
                               n[3], now_us);
    } else {
        Py_BEGIN_ALLOW_THREADS
        packed = rlgo_evaluate(handle, (char *)id[0], n[0], (char *)id[1], n[1], (char *)id[2], n[2], (char *)id[3],
                               n[3], now_us);
        Py_END_ALLOW_THREADS
    }
    /* The tool as it crossed: the limits table is keyed by wire names. */
    result = rl_decision(ctx, packed, owned[3] ? owned[3] : in[3]);
done:
    for (int i = 0; i < 4; i++) {
        Py_XDECREF(owned[i]);
    }
    return result;
}

PyObject *rl_fast_evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames) {
    (void)self;
    return rl_fast_request(0, "evaluate_fast", args, nargsf, kwnames);
}

PyObject *rl_fast_submit(PyObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames) {
    (void)self;
    return rl_fast_request(1, "submit_fast", args, nargsf, kwnames);
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
