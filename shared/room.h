#ifndef CHATD_SHARED_ROOM_H
#define CHATD_SHARED_ROOM_H

/* Room names (PROTOCOL.md, terms): [A-Za-z0-9_.-]{1,64}. The rule is
 * ASCII-only so a name can go into Redis keys, channel names, SQL, URLs
 * and log lines without escaping. */

#include <stdbool.h>
#include <stddef.h>

#define ROOM_NAME_MAX 64

/* The longest notice text (bytes of UTF-8) an admin may send to a room:
 * chatctl refuses longer ones, and workers ignore them (and log it). */
#define ROOM_NOTICE_MAX_BYTES 8192

/* True when s[0..n) is a valid room name. Reads nothing past n; a NUL
 * inside the range makes it invalid. */
bool room_name_valid(const char *s, size_t n);

#endif
