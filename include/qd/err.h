/*
 * err.h - error codes and the thread-local error message.
 *
 * Every fallible libqd function returns an int: QD_OK (0) or a negative qd_err. The detail of the most recent
 * failure on this thread is kept in thread-local storage: read it with qd_error_last(). Each function documents the
 * two or three codes a caller is expected to handle; any other failure is reported as QD_ERROR.
 */
#ifndef QD_ERR_H
#define QD_ERR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes. Values are part of the ABI: never renumber, only append. */
typedef enum qd_err {
    QD_OK = 0,
    QD_ERROR = -1,         /**< generic failure; the message says what */
    QD_ENOTFOUND = -2,     /**< the named object does not exist */
    QD_EEXISTS = -3,       /**< the object already exists */
    QD_EINVAL = -4,        /**< bad argument or malformed input */
    QD_ECORRUPT = -5,      /**< stored or received data fails its hash or structure check */
    QD_EBADSIG = -6,       /**< a signature does not verify */
    QD_ENOMEM = -7,        /**< an allocation failed */
    QD_EFULL = -8,         /**< the store's map or the disk is full */
    QD_EIO = -9,           /**< an operating-system I/O call failed */
    QD_EAGAIN = -10,       /**< try again later */
    QD_EUNSUPPORTED = -11, /**< valid input that this build cannot handle */
    QD_EBUSY = -12,        /**< another process holds the resource (e.g. writes the store) */
    QD_EVERSION = -13,     /**< made by a newer version of quantd */
    QD_ENOTSTORE = -14,    /**< a directory that is not a quantd store */
    QD_EDIGEST = -15,      /**< content does not match the expected digest */
    QD_ETRUNCATED = -16,   /**< a stream ended before it should have */
    QD_EREFERENCED = -17,  /**< the object is referenced and cannot be removed */
    QD_ECANCELED = -18     /**< the operation was cancelled by its caller */
} qd_err;

/** Error classes: which module set the message. */
typedef enum qd_error_class {
    QD_EC_NONE = 0,
    QD_EC_OS,
    QD_EC_NOMEM,
    QD_EC_STORE,
    QD_EC_VERIFY,
    QD_EC_ENGINE,
    QD_EC_NET,
    QD_EC_CONFIG,
    QD_EC_INVALID
} qd_error_class;

/** The last error on this thread. */
typedef struct qd_error {
    int code;           /**< the qd_err that was returned */
    int klass;          /**< a qd_error_class */
    const char *message; /**< never NULL; "" when no error is set */
} qd_error;

/**
 * Record an error for this thread and return code, so callers may write `return qd_error_set(...)`.
 * @param[in] code   the qd_err being returned
 * @param[in] klass  a qd_error_class
 * @param[in] fmt    printf-style message
 * @return code
 */
int qd_error_set(int code, int klass, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Like qd_error_set() with a va_list. */
int qd_error_vset(int code, int klass, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/** Prefix the current message with more context ("put foo: <old message>"). @return the current code. */
int qd_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * The last error set on this thread.
 * @note The pointer is borrowed: valid until the next qd_error_* call on this thread.
 */
const qd_error *qd_error_last(void);

/** Clear the last error of this thread. */
void qd_error_clear(void);

/** An error carried from one thread to another: a worker saves what its call returned, the thread that answers
 * restores it (the daemon's work items). */
typedef struct qd_error_saved {
    int code;          /**< the qd_err the call returned; 0 when it succeeded */
    int klass;         /**< a qd_error_class */
    char message[512]; /**< the call's message, or the code's name where it set none; "" on success */
} qd_error_saved;

/** Save the result of a call that returned code: on failure (code < 0), with this thread's last class and
 * message. */
void qd_error_save(qd_error_saved *s, int code);

/** Make a saved failure this thread's last error. @return s->code */
int qd_error_restore(const qd_error_saved *s);

/** A short constant name for a code ("not found", "corrupt", ...). */
const char *qd_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
