#ifndef CHATD_WORKER_CONTROL_H
#define CHATD_WORKER_CONTROL_H

/* Admin commands from the control channel (PROTOCOL.md section 5):
 *   {"op":"kick","user":"<id>"}            close the user's sockets with 4003
 *   {"op":"notice","room":"<r>","text":"..."} a notice event to the room
 * Every worker of every host receives each command and acts on its own
 * connections, so each connection is acted on exactly once. */

#include <stddef.h>

struct worker;

void control_handle(struct worker *w, const char *json, size_t len);

/* Kicks the banned users among this worker's connections: called when the
 * control channel or the command link comes back, since commands sent
 * while it was down are lost. */
void control_sweep_bans(struct worker *w);

#endif
