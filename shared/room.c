#include "shared/room.h"

bool room_name_valid(const char *s, size_t n)
{
    if (n < 1 || n > ROOM_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* Spelled out instead of isalnum(): locale-independent. */
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}
