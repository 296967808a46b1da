/* verify_int.h - private to verify/: the OpenSSL error translator. */
#ifndef QD_VERIFY_INT_H
#define QD_VERIFY_INT_H

/** Drain OpenSSL's error queue into the thread's qd error. @return code */
int qd_verify__err_ssl(int code, const char *what);

#endif
