/* version.c - the version string, with the commit the Makefile passes in. */
#include "qd/version.h"

#ifndef QD_BUILD_COMMIT
#define QD_BUILD_COMMIT "unknown"
#endif

const char *qd_version_string(void) { return QD_VERSION " (" QD_BUILD_COMMIT ")"; }
