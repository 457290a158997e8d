/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, with
 * committed offsets stored durably.
 */
#include "broker_int.h"

const struct api_entry group_apis[] = {
    {-1, 0, 0, NULL},
};

void group_shard_start(struct bshard *bs)
{
    (void)bs;
}

void group_shard_finish(struct bshard *bs)
{
    (void)bs;
}
