/* version.h - the version of quantd and its libqd. */
#ifndef QD_VERSION_H
#define QD_VERSION_H

#define QD_VERSION_MAJOR 0
#define QD_VERSION_MINOR 1
#define QD_VERSION_PATCH 0
#define QD_VERSION "0.1.0"

/** The version string plus the build's commit when known ("0.1.0 (abc1234)"). */
const char *qd_version_string(void);

#endif
