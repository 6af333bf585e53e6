/* The writer's compiled hot path: EventWriter.log for calls whose values are all floats.
 *
 * Recorder.log(step, mapping=None, /, **scalars) checks, in one pass over the values,
 * that the step is an int and every value an exact float, then appends the call to
 * raw arrays: step (int64), wall time (double, the clock of time.time()), an index
 * into a table of name tuples (int32; a call with the previous call's names reuses
 * its entry) and the values (double). Nothing is allocated per call, so the training
 * thread pays a few hundred nanoseconds and the encoder thread finds its input as
 * bytes it reads with numpy, holding the GIL only briefly. Any other call (tensors,
 * ints, text, a closed writer) goes to the Python fallback given at construction,
 * which reads values at once as before. take() hands everything recorded so far to
 * the encoder and starts over.
 *
 * Optional: rldk runs the same logic in pure Python when this module is not built
 * (rldk/writer/_writer.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

typedef struct {
    PyObject_HEAD
    PyObject *fallback;     /* callable(step, mapping=None, /, **scalars) for other calls */
    PyObject *wake;         /* callable() once wake_at values are recorded */
    PyObject *names;        /* list of name tuples; ids index it */
    PyObject *current;      /* the last call's names (a tuple), or NULL */
    PyObject *last_step;    /* the last call's step (spans default to it) */
    int32_t current_id;
    Py_ssize_t calls, cap_calls, nvalues, cap_values, wake_at, yield_every;
    int64_t *steps;
    double *walls;
    int32_t *ids;
    double *values;
    int closed;
} Recorder;

static double
wall_time(void)
{
#ifdef _WIN32
    FILETIME ft;
    ULARGE_INTEGER t;
    GetSystemTimePreciseAsFileTime(&ft);
    t.LowPart = ft.dwLowDateTime;
    t.HighPart = ft.dwHighDateTime;
    return (double)(t.QuadPart - 116444736000000000ULL) * 1e-7;
#else
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

static int
grow(void **buf, Py_ssize_t *cap, Py_ssize_t need, size_t item)
{
    Py_ssize_t size = *cap ? *cap : 1024;
    while (size < need)
        size *= 2;
    void *bigger = PyMem_Realloc(*buf, (size_t)size * item);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = bigger;
    *cap = size;
    return 0;
}

static int
reserve(Recorder *self, Py_ssize_t k)
{
    if (self->calls == self->cap_calls) {
        Py_ssize_t cap = self->cap_calls, need = self->calls + 1;
        if (grow((void **)&self->steps, &cap, need, sizeof(int64_t)) < 0)
            return -1;
        cap = self->cap_calls;
        if (grow((void **)&self->walls, &cap, need, sizeof(double)) < 0)
            return -1;
        cap = self->cap_calls;
        if (grow((void **)&self->ids, &cap, need, sizeof(int32_t)) < 0)
            return -1;
        self->cap_calls = cap;
    }
    if (self->nvalues + k > self->cap_values)
        return grow((void **)&self->values, &self->cap_values, self->nvalues + k, sizeof(double));
    return 0;
}

/* The id of `names` (a tuple of str): the current entry when equal, else a new one. */
static int
names_id(Recorder *self, PyObject *names)
{
    if (self->current != NULL) {
        int same = PyObject_RichCompareBool(names, self->current, Py_EQ);
        if (same < 0)
            return -1;
        if (same) {
            Py_SETREF(self->current, Py_NewRef(names));   /* identity hits next time */
            return 0;
        }
    }
    if (PyList_GET_SIZE(self->names) >= INT32_MAX || PyList_Append(self->names, names) < 0)
        return -1;
    Py_XSETREF(self->current, Py_NewRef(names));
    self->current_id = (int32_t)(PyList_GET_SIZE(self->names) - 1);
    return 0;
}

/* Values of a dict call into the value buffer; 1 when the call is not all-float. */
static int
copy_dict(Recorder *self, PyObject *mapping, Py_ssize_t k, int *same)
{
    PyObject *key, *value, *cur = self->current;
    Py_ssize_t pos = 0, i = 0;
    double *out = self->values + self->nvalues;
    *same = cur != NULL && PyTuple_GET_SIZE(cur) == k;
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        if (!PyFloat_CheckExact(value) || !PyUnicode_CheckExact(key))
            return 1;
        out[i] = PyFloat_AS_DOUBLE(value);
        if (*same && PyTuple_GET_ITEM(cur, i) != key)
            *same = 0;
        i++;
    }
    return 0;
}

static int
copy_kwargs(Recorder *self, PyObject *const *values, PyObject *kwnames, Py_ssize_t k, int *same)
{
    double *out = self->values + self->nvalues;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (!PyFloat_CheckExact(values[i]))
            return 1;
        out[i] = PyFloat_AS_DOUBLE(values[i]);
    }
    *same = kwnames == self->current;
    return 0;
}

static PyObject *
Recorder_log(Recorder *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, k;
    PyObject *mapping = nargs == 2 ? args[1] : Py_None;
    int overflow = 0, same = 0, other;
    long long step;

    if (self->names == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Recorder.__init__ was not called");
        return NULL;
    }
    if (self->closed || nargs < 1 || nargs > 2 || !PyLong_CheckExact(args[0]))
        goto fallback;
    step = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (overflow || (step == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        goto fallback;
    }
    if (mapping != Py_None) {
        if (nkw || !PyDict_CheckExact(mapping) || (k = PyDict_GET_SIZE(mapping)) == 0)
            goto fallback;
    }
    else if ((k = nkw) == 0)
        goto fallback;
    if (reserve(self, k) < 0)
        return NULL;
    other = mapping != Py_None ? copy_dict(self, mapping, k, &same)
                               : copy_kwargs(self, args + nargs, kwnames, k, &same);
    if (other)
        goto fallback;
    if (!same) {
        PyObject *names = mapping != Py_None ? PySequence_Tuple(mapping) : Py_NewRef(kwnames);
        int failed = names == NULL || names_id(self, names) < 0;
        Py_XDECREF(names);
        if (failed)
            return NULL;
    }
    self->steps[self->calls] = step;
    self->walls[self->calls] = wall_time();
    self->ids[self->calls] = self->current_id;
    self->calls++;
    self->nvalues += k;
    Py_XSETREF(self->last_step, Py_NewRef(args[0]));
    if (self->yield_every > 0 && self->calls % self->yield_every == 0) {
        /* the encoder is at work: let it have the GIL now if it waits for it, rather
           than after the interpreter's switch interval (5 ms) of a tight loop */
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
    }
    if (self->nvalues >= self->wake_at && self->wake != Py_None) {
        PyObject *r = PyObject_CallNoArgs(self->wake);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;

fallback:
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

static PyObject *
bytes_of(const void *data, Py_ssize_t n, size_t item)
{
    return PyBytes_FromStringAndSize((const char *)data, n * (Py_ssize_t)item);
}

static PyObject *
Recorder_take(Recorder *self, PyObject *Py_UNUSED(ignored))
{
    if (self->calls == 0)
        Py_RETURN_NONE;
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL || (self->current != NULL && PyList_Append(fresh, self->current) < 0)) {
        Py_XDECREF(fresh);
        return NULL;
    }
    PyObject *out = Py_BuildValue("(NNNNN)", Py_NewRef(self->names),
                                  bytes_of(self->ids, self->calls, sizeof(int32_t)),
                                  bytes_of(self->steps, self->calls, sizeof(int64_t)),
                                  bytes_of(self->walls, self->calls, sizeof(double)),
                                  bytes_of(self->values, self->nvalues, sizeof(double)));
    if (out == NULL) {
        Py_DECREF(fresh);
        return NULL;
    }
    Py_SETREF(self->names, fresh);
    self->current_id = 0;
    self->calls = self->nvalues = 0;
    return out;
}

static Py_ssize_t
Recorder_len(Recorder *self)
{
    return self->calls;
}

static int
Recorder_init(Recorder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "wake", "wake_at", NULL};
    PyObject *fallback, *wake;
    Py_ssize_t wake_at = 1 << 16;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|n", kwlist, &fallback, &wake, &wake_at))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->wake, Py_NewRef(wake));
    Py_XSETREF(self->names, PyList_New(0));
    Py_XSETREF(self->last_step, Py_NewRef(Py_None));
    Py_CLEAR(self->current);
    self->wake_at = wake_at;
    self->calls = self->nvalues = 0;
    return self->names == NULL ? -1 : 0;
}

static int
Recorder_traverse(Recorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->wake);
    Py_VISIT(self->names);
    Py_VISIT(self->current);
    Py_VISIT(self->last_step);
    return 0;
}

static int
Recorder_clear(Recorder *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->wake);
    Py_CLEAR(self->names);
    Py_CLEAR(self->current);
    Py_CLEAR(self->last_step);
    return 0;
}

static void
Recorder_dealloc(Recorder *self)
{
    PyObject_GC_UnTrack(self);
    Recorder_clear(self);
    PyMem_Free(self->steps);
    PyMem_Free(self->walls);
    PyMem_Free(self->ids);
    PyMem_Free(self->values);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Recorder_get_last_step(Recorder *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->last_step ? self->last_step : Py_None);
}

static int
Recorder_set_last_step(Recorder *self, PyObject *value, void *Py_UNUSED(closure))
{
    Py_XSETREF(self->last_step, Py_NewRef(value ? value : Py_None));
    return 0;
}

static PyMethodDef Recorder_methods[] = {
    {"log", (PyCFunction)(void (*)(void))Recorder_log, METH_FASTCALL | METH_KEYWORDS,
     "log($self, step, mapping=None, /, **scalars)\n--\n\n"
     "Record scalars for step: log(10, loss=0.3) or log(10, {\"objective/kl\": 0.1}) "
     "(see rldk.writer.EventWriter.log)."},
    {"take", (PyCFunction)Recorder_take, METH_NOARGS,
     "take() -> None or (names, ids, steps, walls, values): what was recorded, as bytes; "
     "starts over."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Recorder_members[] = {
    {"wake_at", T_PYSSIZET, offsetof(Recorder, wake_at), 0,
     "wake() is called once this many values are recorded"},
    {"values", T_PYSSIZET, offsetof(Recorder, nvalues), READONLY, "values recorded"},
    {"yield_every", T_PYSSIZET, offsetof(Recorder, yield_every), 0,
     "if positive, every this many calls log() lets a thread waiting for the GIL run"},
    {"closed", T_INT, offsetof(Recorder, closed), 0, "nonzero: every call goes to the fallback"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Recorder_getset[] = {
    {"last_step", (getter)Recorder_get_last_step, (setter)Recorder_set_last_step,
     "the step of the last call", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Recorder_as_sequence = {.sq_length = (lenfunc)Recorder_len};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rldk.writer._hotpath.Recorder",
    .tp_doc = "Recorder(fallback, wake, wake_at=65536): all-float log calls as raw arrays.",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Recorder_init,
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_traverse = (traverseproc)Recorder_traverse,
    .tp_clear = (inquiry)Recorder_clear,
    .tp_methods = Recorder_methods,
    .tp_members = Recorder_members,
    .tp_getset = Recorder_getset,
    .tp_as_sequence = &Recorder_as_sequence,
};

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT, "_hotpath", "The writer's compiled hot path (optional).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    if (PyType_Ready(&RecorderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&hotpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "Recorder", Py_NewRef((PyObject *)&RecorderType)) < 0) {
        Py_DECREF((PyObject *)&RecorderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
