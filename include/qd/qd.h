/* qd.h - the umbrella header of libqd. */
#ifndef QD_QD_H
#define QD_QD_H

#include "qd/alloc.h"
#include "qd/buf.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/log.h"
#include "qd/store.h"
#include "qd/version.h"

#endif
