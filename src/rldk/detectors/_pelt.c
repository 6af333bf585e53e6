/* The compiled PELT search of rldk/detectors/changepoint.py.
 *
 * pelt(s1, s2, penalty, min_size) takes the prefix sums of y and y*y (float64
 * buffers of n + 1 values, each starting with 0) and returns the sorted start
 * indices of the optimal segmentation, exactly as changepoint._pelt_python does:
 * the same double arithmetic in the same order (its one product is divided, never
 * added, so no multiply-add can be fused), the first of equal totals chosen, the
 * same pruning. A segmentation is identical, cut for cut, with or without it.
 *
 * Optional: rldk runs the Python loop when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static int
read_sums(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != sizeof(double) || view->format == NULL
            || strcmp(view->format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous float64 buffer", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The search itself on plain arrays; fills last[0..n] (the chosen start of each
 * prefix). Returns -1 when out of memory. */
static int
search(const double *s1, const double *s2, Py_ssize_t n, double penalty,
       Py_ssize_t min_size, Py_ssize_t *last)
{
    double *best = PyMem_RawMalloc((size_t)(n + 1) * sizeof(double));
    double *totals = PyMem_RawMalloc((size_t)(n + 1) * sizeof(double));
    Py_ssize_t *cands = PyMem_RawMalloc((size_t)(n + 1) * sizeof(Py_ssize_t));
    if (best == NULL || totals == NULL || cands == NULL) {
        PyMem_RawFree(best);
        PyMem_RawFree(totals);
        PyMem_RawFree(cands);
        return -1;
    }
    for (Py_ssize_t t = 0; t <= n; t++) {
        best[t] = INFINITY;
        last[t] = 0;
    }
    best[0] = -penalty;                    /* the first segment pays no penalty */
    Py_ssize_t count = 1;
    cands[0] = 0;
    for (Py_ssize_t t = 1; t <= n; t++) {
        double a1 = s1[t], a2 = s2[t];
        Py_ssize_t chosen = -1;
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_ssize_t c = cands[i];
            double diff = a1 - s1[c];
            double square = diff * diff;
            double cost = (a2 - s2[c]) - square / (double)(t - c);
            double total = best[c] + (cost >= 0.0 ? cost : 0.0);
            totals[i] = total;
            if (t - c >= min_size && (chosen < 0 || total < totals[chosen]))
                chosen = i;
        }
        if (chosen >= 0) {
            double cut = totals[chosen] + penalty;
            Py_ssize_t start = cands[chosen];
            /* PELT pruning (K = 0 holds for the L2 cost): a start that cannot beat
             * the best cut now never will */
            Py_ssize_t kept = 0;
            for (Py_ssize_t i = 0; i < count; i++) {
                if (t - cands[i] < min_size || totals[i] <= cut)
                    cands[kept++] = cands[i];
            }
            count = kept;
            best[t] = cut;
            last[t] = start;
        }
        if (best[t] < INFINITY)
            cands[count++] = t;
    }
    PyMem_RawFree(best);
    PyMem_RawFree(totals);
    PyMem_RawFree(cands);
    return 0;
}

static PyObject *
pelt(PyObject *module, PyObject *args)
{
    PyObject *first, *second;
    double penalty;
    Py_ssize_t min_size;
    if (!PyArg_ParseTuple(args, "OOdn:pelt", &first, &second, &penalty, &min_size))
        return NULL;
    Py_buffer v1, v2;
    if (read_sums(first, &v1, "s1") < 0)
        return NULL;
    if (read_sums(second, &v2, "s2") < 0) {
        PyBuffer_Release(&v1);
        return NULL;
    }
    Py_ssize_t n = v1.len / (Py_ssize_t)sizeof(double) - 1;
    PyObject *result = NULL;
    Py_ssize_t *last = NULL;
    if (n < 0 || v2.len != v1.len) {
        PyErr_SetString(PyExc_ValueError, "s1 and s2 must hold the same n + 1 prefix sums");
        goto done;
    }
    last = PyMem_Malloc((size_t)(n + 1) * sizeof(Py_ssize_t));
    if (last == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = search((const double *)v1.buf, (const double *)v2.buf, n, penalty, min_size, last);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    /* the starts, walked back from the end: each is before the one found after it,
     * so the walk yields them in decreasing order, ending at 0 */
    Py_ssize_t count = 0;
    for (Py_ssize_t t = n; t > 0; t = last[t])
        count++;
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    Py_ssize_t i = count;
    for (Py_ssize_t t = n; t > 0; t = last[t]) {
        PyObject *start = PyLong_FromSsize_t(last[t]);
        if (start == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, --i, start);
    }
done:
    PyMem_Free(last);
    PyBuffer_Release(&v1);
    PyBuffer_Release(&v2);
    return result;
}

static PyMethodDef methods[] = {
    {"pelt", pelt, METH_VARARGS,
     "pelt(s1, s2, penalty, min_size) -> sorted segment starts (the first is 0)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pelt", "The compiled PELT search of rldk.detectors.changepoint.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__pelt(void)
{
    return PyModule_Create(&module);
}
