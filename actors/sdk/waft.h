/* Waft actor SDK: include this one header. See docs/actors.md for how to write and build an actor. */
#ifndef WAFT_H
#define WAFT_H

#include "waft_buf.h"
#include "waft_http.h"
#include "waft_json.h"
#include "waft_log.h"
#include "waft_ml.h"
#include "waft_msgpack.h"
#include "waft_str.h"
#include "waft_wapc.h"

#endif
