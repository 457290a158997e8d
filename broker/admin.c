/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Topic and cluster administration: DeleteTopics, CreatePartitions,
 * DescribeConfigs, DescribeCluster, DeleteRecords.
 */
#include "broker_int.h"

const struct api_entry admin_apis[] = {
    {-1, 0, 0, NULL},
};
