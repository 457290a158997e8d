/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key-group ranges (see sp_keygroup.h). The range of owner o is the set of
 * groups g with floor(g * n / G) == o, i.e. [ceil(o * G / n), ceil((o+1) * G / n)),
 * so sp_key_group_owner and this function always agree.
 */
#include <errno.h>

#include "sp_keygroup.h"

int sp_key_group_range(uint32_t group_count, uint32_t owner_count, uint32_t owner,
                       struct sp_key_group_range *range_out)
{
    SP_ASSERT(range_out != NULL);
    if (group_count == 0 || group_count > SP_KEY_GROUPS_MAX || owner_count == 0 ||
        owner_count > group_count || owner >= owner_count)
        return -EINVAL;
    uint64_t g = group_count;
    uint64_t n = owner_count;
    range_out->first = (uint32_t)((owner * g + n - 1) / n);
    range_out->end = (uint32_t)(((owner + 1) * g + n - 1) / n);
    SP_ASSERT(range_out->first < range_out->end);
    return 0;
}
