"""The built-in AWS resource types, as metadata for the generic collectors (see ``registry.py``).

Page sizes are the largest each API accepts: fewer calls means less throttling. Exclusions drop
resources that no longer cost money or cannot be tagged (terminated, deleted, AWS-managed).
Operation and parameter names are checked against botocore's service models by
``tests/unit/test_registry_metadata.py``.
"""

from __future__ import annotations

from scanner.providers.aws.registry import (
    CollectorShape,
    DescribeSpec,
    Exclude,
    ListSpec,
    PageSpec,
    ParentSpec,
    RegionLookupSpec,
    ResourceTypeInfo,
    TagShape,
    TagSource,
    TagSpec,
    Transform,
    register,
)

_INLINE_KV = TagSpec(source=TagSource.INLINE, path="Tags")

# ----------------------------------------------------------------------------------------- EC2
register(
    ResourceTypeInfo(
        resource_type="ec2:instance",
        service="ec2",
        api_family="ec2",
        group="ec2",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec(
            "DescribeInstances", "Reservations[].Instances[]", {"MaxResults": 1000}, min_page_size=5
        ),
        tags=_INLINE_KV,
        iam_actions=("ec2:DescribeInstances",),
        id_field="InstanceId",
        arn_template="arn:{partition}:ec2:{region}:{account}:instance/{id}",
        name_from_tag="Name",
        exclude=(
            Exclude("State.Name", ("terminated", "shutting-down"), "terminated instances cost nothing"),
        ),
        attributes={
            "instance_type": "InstanceType",
            "state": "State.Name",
            "vpc_id": "VpcId",
            "launch_time": "LaunchTime",
        },
    )
)

register(
    ResourceTypeInfo(
        resource_type="ec2:volume",
        service="ec2",
        api_family="ec2",
        group="ec2",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("DescribeVolumes", "Volumes", {"MaxResults": 500}, min_page_size=5),
        tags=_INLINE_KV,
        iam_actions=("ec2:DescribeVolumes",),
        id_field="VolumeId",
        arn_template="arn:{partition}:ec2:{region}:{account}:volume/{id}",
        name_from_tag="Name",
        exclude=(Exclude("State", ("deleting", "deleted"), "volume is being deleted"),),
        attributes={
            "size_gib": "Size",
            "volume_type": "VolumeType",
            "state": "State",
            "attached_instance": "Attachments[0].InstanceId",
        },
    )
)

register(
    ResourceTypeInfo(
        resource_type="ec2:snapshot",
        service="ec2",
        api_family="ec2",
        group="ec2",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        # Without OwnerIds=self, DescribeSnapshots also lists every public snapshot in the region.
        listing=ListSpec(
            "DescribeSnapshots", "Snapshots", {"OwnerIds": ["self"], "MaxResults": 1000}, min_page_size=5
        ),
        tags=_INLINE_KV,
        iam_actions=("ec2:DescribeSnapshots",),
        id_field="SnapshotId",
        # Snapshot ARNs carry no account id (IAM service authorization reference).
        arn_template="arn:{partition}:ec2:{region}::snapshot/{id}",
        name_from_tag="Name",
        attributes={"volume_id": "VolumeId", "size_gib": "VolumeSize", "state": "State"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="ec2:elastic-ip",
        service="ec2",
        api_family="ec2",
        group="ec2",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        # DescribeAddresses has no pagination: one call returns every address of the region.
        listing=ListSpec("DescribeAddresses", "Addresses", pagination=None),
        tags=_INLINE_KV,
        iam_actions=("ec2:DescribeAddresses",),
        id_field="AllocationId",
        arn_template="arn:{partition}:ec2:{region}:{account}:elastic-ip/{id}",
        name_from_tag="Name",
        attributes={"public_ip": "PublicIp", "instance_id": "InstanceId", "association_id": "AssociationId"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="ec2:natgateway",
        service="ec2",
        api_family="ec2",
        group="ec2",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("DescribeNatGateways", "NatGateways", {"MaxResults": 1000}, min_page_size=5),
        tags=_INLINE_KV,
        iam_actions=("ec2:DescribeNatGateways",),
        id_field="NatGatewayId",
        arn_template="arn:{partition}:ec2:{region}:{account}:natgateway/{id}",
        name_from_tag="Name",
        exclude=(Exclude("State", ("deleting", "deleted"), "NAT gateway is deleted"),),
        attributes={"state": "State", "vpc_id": "VpcId", "subnet_id": "SubnetId"},
    )
)

# ------------------------------------------------------------------------------------------ S3
register(
    ResourceTypeInfo(
        resource_type="s3:bucket",
        service="s3",
        api_family="s3",
        group="s3",
        shape=CollectorShape.GLOBAL_LIST_LOCATE,
        is_global=True,
        # With MaxBuckets set, S3 returns a ContinuationToken past that many buckets (quota > 10,000).
        listing=ListSpec("ListBuckets", "Buckets", {"MaxBuckets": 10000}),
        region_lookup=RegionLookupSpec(
            "GetBucketLocation",
            {"Bucket": "@id"},
            "LocationConstraint",
            default_region="us-east-1",
            aliases={"EU": "eu-west-1"},
            missing_codes=("NoSuchBucket",),
        ),
        tags=TagSpec(
            tagging_api_filter="s3",
            source=TagSource.PER_ITEM,
            operation="GetBucketTagging",
            params={"Bucket": "@id"},
            path="TagSet",
            empty_codes=("NoSuchTagSet",),
            missing_codes=("NoSuchBucket",),
            in_item_region=True,
        ),
        iam_actions=("s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetBucketTagging"),
        id_field="Name",
        name_field="Name",
        arn_template="arn:{partition}:s3:::{id}",
        attributes={"created": "CreationDate"},
    )
)

# ----------------------------------------------------------------------------------------- RDS
register(
    ResourceTypeInfo(
        resource_type="rds:db",
        service="rds",
        api_family="rds",
        group="rds",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("DescribeDBInstances", "DBInstances", {"MaxRecords": 100}),
        tags=TagSpec(source=TagSource.INLINE, path="TagList"),
        iam_actions=("rds:DescribeDBInstances",),
        arn_field="DBInstanceArn",
        name_field="DBInstanceIdentifier",
        exclude=(Exclude("DBInstanceStatus", ("deleting",), "instance is being deleted"),),
        attributes={
            "engine": "Engine",
            "instance_class": "DBInstanceClass",
            "status": "DBInstanceStatus",
            "cluster": "DBClusterIdentifier",
        },
    )
)

register(
    ResourceTypeInfo(
        resource_type="rds:cluster",
        service="rds",
        api_family="rds",
        group="rds",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("DescribeDBClusters", "DBClusters", {"MaxRecords": 100}),
        tags=TagSpec(source=TagSource.INLINE, path="TagList"),
        iam_actions=("rds:DescribeDBClusters",),
        arn_field="DBClusterArn",
        name_field="DBClusterIdentifier",
        exclude=(Exclude("Status", ("deleting",), "cluster is being deleted"),),
        attributes={"engine": "Engine", "status": "Status"},
    )
)

# ---------------------------------------------------------------------------------- Serverless
register(
    ResourceTypeInfo(
        resource_type="lambda:function",
        service="lambda",
        api_family="lambda",
        group="lambda",
        shape=CollectorShape.LIST_THEN_TAG,
        # 50 is ListFunctions' maximum page size; the peer project stopped after the first page.
        listing=ListSpec("ListFunctions", "Functions", {"MaxItems": 50}),
        tags=TagSpec(
            tagging_api_filter="lambda:function",
            source=TagSource.PER_ITEM,
            operation="ListTags",
            params={"Resource": "@arn"},
            path="Tags",
            shape=TagShape.DICT,
            missing_codes=("ResourceNotFoundException",),
        ),
        iam_actions=("lambda:ListFunctions", "lambda:ListTags"),
        arn_field="FunctionArn",
        name_field="FunctionName",
        attributes={"runtime": "Runtime", "memory_mb": "MemorySize", "last_modified": "LastModified"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="dynamodb:table",
        service="dynamodb",
        api_family="dynamodb",
        group="dynamodb",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("ListTables", "TableNames", {"Limit": 100}, scalar_field="TableName"),
        tags=TagSpec(
            tagging_api_filter="dynamodb:table",
            source=TagSource.PER_ITEM,
            operation="ListTagsOfResource",
            params={"ResourceArn": "@arn"},
            path="Tags",
            pagination="botocore",
            missing_codes=("ResourceNotFoundException",),
        ),
        iam_actions=("dynamodb:ListTables", "dynamodb:ListTagsOfResource"),
        name_field="TableName",
        arn_template="arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    )
)

register(
    ResourceTypeInfo(
        resource_type="states:stateMachine",
        service="stepfunctions",
        api_family="states",
        group="states",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("ListStateMachines", "stateMachines", {"maxResults": 1000}),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"resourceArn": "@arn"},
            path="tags",
            key_field="key",
            value_field="value",
            missing_codes=("ResourceNotFound", "StateMachineDoesNotExist"),
        ),
        iam_actions=("states:ListStateMachines", "states:ListTagsForResource"),
        arn_field="stateMachineArn",
        name_field="name",
        attributes={"type": "type"},
    )
)

# ---------------------------------------------------------------------------------- Containers
register(
    ResourceTypeInfo(
        resource_type="ecs:cluster",
        service="ecs",
        api_family="ecs",
        group="ecs",
        shape=CollectorShape.LIST_THEN_DESCRIBE,
        listing=ListSpec("ListClusters", "clusterArns", {"maxResults": 100}, scalar_field="clusterArn"),
        describe=DescribeSpec(
            "DescribeClusters",
            "clusters",
            static_params={"include": ["TAGS"]},
            batch_param="clusters",
            batch_ref="clusterArn",
            batch_size=100,
        ),
        tags=TagSpec(source=TagSource.INLINE, path="tags", key_field="key", value_field="value"),
        iam_actions=("ecs:ListClusters", "ecs:DescribeClusters"),
        arn_field="clusterArn",
        name_field="clusterName",
        exclude=(Exclude("status", ("INACTIVE",), "cluster is deleted"),),
        attributes={"status": "status", "active_services": "activeServicesCount"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="ecs:service",
        service="ecs",
        api_family="ecs",
        group="ecs",
        shape=CollectorShape.NESTED_LIST,
        parent=ParentSpec("ListClusters", "clusterArns", child_param="cluster", params={"maxResults": 100}),
        listing=ListSpec("ListServices", "serviceArns", {"maxResults": 100}, scalar_field="serviceArn"),
        describe=DescribeSpec(
            "DescribeServices",
            "services",
            params={"cluster": "@parent"},
            static_params={"include": ["TAGS"]},
            batch_param="services",
            batch_ref="serviceArn",
            batch_size=10,
        ),
        tags=TagSpec(source=TagSource.INLINE, path="tags", key_field="key", value_field="value"),
        iam_actions=("ecs:ListClusters", "ecs:ListServices", "ecs:DescribeServices"),
        arn_field="serviceArn",
        name_field="serviceName",
        exclude=(Exclude("status", ("INACTIVE",), "service is deleted"),),
        attributes={
            "cluster_arn": "clusterArn",
            "launch_type": "launchType",
            "desired_count": "desiredCount",
        },
    )
)

register(
    ResourceTypeInfo(
        resource_type="eks:cluster",
        service="eks",
        api_family="eks",
        group="eks",
        shape=CollectorShape.LIST_THEN_DESCRIBE,
        listing=ListSpec("ListClusters", "clusters", {"maxResults": 100}, scalar_field="name"),
        describe=DescribeSpec(
            "DescribeCluster",
            "cluster",
            params={"name": "name"},
            missing_codes=("ResourceNotFoundException",),
        ),
        tags=TagSpec(source=TagSource.INLINE, path="tags", shape=TagShape.DICT),
        iam_actions=("eks:ListClusters", "eks:DescribeCluster"),
        arn_field="arn",
        name_field="name",
        exclude=(Exclude("status", ("DELETING",), "cluster is being deleted"),),
        attributes={"version": "version", "status": "status"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="ecr:repository",
        service="ecr",
        api_family="ecr",
        group="ecr",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("DescribeRepositories", "repositories", {"maxResults": 1000}),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"resourceArn": "@arn"},
            path="tags",
            missing_codes=("RepositoryNotFoundException",),
        ),
        iam_actions=("ecr:DescribeRepositories", "ecr:ListTagsForResource"),
        arn_field="repositoryArn",
        name_field="repositoryName",
        attributes={"uri": "repositoryUri"},
    )
)

# ----------------------------------------------------------------------------------- Databases
register(
    ResourceTypeInfo(
        resource_type="elasticache:cluster",
        service="elasticache",
        api_family="elasticache",
        group="elasticache",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("DescribeCacheClusters", "CacheClusters", {"MaxRecords": 100}),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"ResourceName": "@arn"},
            path="TagList",
            missing_codes=("CacheClusterNotFound",),
        ),
        iam_actions=("elasticache:DescribeCacheClusters", "elasticache:ListTagsForResource"),
        arn_field="ARN",
        name_field="CacheClusterId",
        exclude=(Exclude("CacheClusterStatus", ("deleting", "deleted"), "cluster is deleted"),),
        attributes={
            "engine": "Engine",
            "node_type": "CacheNodeType",
            "replication_group": "ReplicationGroupId",
        },
    )
)

register(
    ResourceTypeInfo(
        resource_type="opensearch:domain",
        service="opensearch",
        api_family="es",
        group="opensearch",
        shape=CollectorShape.LIST_THEN_DESCRIBE,
        # ListDomainNames has no pagination: it returns every domain of the region.
        listing=ListSpec("ListDomainNames", "DomainNames", pagination=None),
        describe=DescribeSpec(
            "DescribeDomains",
            "DomainStatusList",
            batch_param="DomainNames",
            batch_ref="DomainName",
            batch_size=5,  # the API's maximum
        ),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTags",
            params={"ARN": "@arn"},
            path="TagList",
            missing_codes=("ResourceNotFoundException",),
        ),
        iam_actions=("es:ListDomainNames", "es:DescribeDomains", "es:ListTags"),
        arn_field="ARN",
        name_field="DomainName",
        arn_type="es:domain",
        exclude=(Exclude("Deleted", (True,), "domain is being deleted"),),
        attributes={"engine_version": "EngineVersion", "instance_type": "ClusterConfig.InstanceType"},
    )
)

# --------------------------------------------------------------------------------- Networking
register(
    ResourceTypeInfo(
        resource_type="elasticloadbalancing:loadbalancer",
        service="elbv2",
        api_family="elasticloadbalancing",
        group="elasticloadbalancing",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("DescribeLoadBalancers", "LoadBalancers", {"PageSize": 400}),
        tags=TagSpec(
            source=TagSource.BATCH,
            operation="DescribeTags",
            batch_param="ResourceArns",
            batch_ref="@arn",
            batch_size=20,  # the API's maximum
            result_path="TagDescriptions",
            batch_match_path="ResourceArn",
            path="Tags",
        ),
        iam_actions=("elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags"),
        arn_field="LoadBalancerArn",
        name_field="LoadBalancerName",
        attributes={"type": "Type", "scheme": "Scheme", "vpc_id": "VpcId"},
        description="Application, network and gateway load balancers (ELBv2).",
    )
)

register(
    ResourceTypeInfo(
        resource_type="elasticloadbalancing:targetgroup",
        service="elbv2",
        api_family="elasticloadbalancing",
        group="elasticloadbalancing",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("DescribeTargetGroups", "TargetGroups", {"PageSize": 400}),
        tags=TagSpec(
            source=TagSource.BATCH,
            operation="DescribeTags",
            batch_param="ResourceArns",
            batch_ref="@arn",
            batch_size=20,
            result_path="TagDescriptions",
            batch_match_path="ResourceArn",
            path="Tags",
        ),
        iam_actions=("elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTags"),
        arn_field="TargetGroupArn",
        name_field="TargetGroupName",
        attributes={"protocol": "Protocol", "vpc_id": "VpcId", "target_type": "TargetType"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="cloudfront:distribution",
        service="cloudfront",
        api_family="cloudfront",
        group="cloudfront",
        shape=CollectorShape.LIST_THEN_TAG,
        is_global=True,
        listing=ListSpec("ListDistributions", "DistributionList.Items"),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"Resource": "@arn"},
            path="Tags.Items",
            missing_codes=("NoSuchResource",),
        ),
        iam_actions=("cloudfront:ListDistributions", "cloudfront:ListTagsForResource"),
        arn_field="ARN",
        id_field="Id",
        name_field="DomainName",
        attributes={"status": "Status", "enabled": "Enabled", "price_class": "PriceClass"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="route53:hostedzone",
        service="route53",
        api_family="route53",
        group="route53",
        shape=CollectorShape.LIST_THEN_TAG,
        is_global=True,
        listing=ListSpec("ListHostedZones", "HostedZones"),
        tags=TagSpec(
            source=TagSource.BATCH,
            operation="ListTagsForResources",
            static_params={"ResourceType": "hostedzone"},
            batch_param="ResourceIds",
            batch_ref="@id",
            batch_size=10,  # the API's maximum
            result_path="ResourceTagSets",
            batch_match_path="ResourceId",
            path="Tags",
        ),
        iam_actions=("route53:ListHostedZones", "route53:ListTagsForResources"),
        id_field="Id",
        id_transform=Transform.BASENAME,  # "/hostedzone/Z123" -> "Z123"
        name_field="Name",
        arn_template="arn:{partition}:route53:::hostedzone/{id}",
        attributes={"private": "Config.PrivateZone", "record_count": "ResourceRecordSetCount"},
    )
)

# ------------------------------------------------------------------------------------ Storage
register(
    ResourceTypeInfo(
        resource_type="elasticfilesystem:file-system",
        service="efs",
        api_family="elasticfilesystem",
        group="elasticfilesystem",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("DescribeFileSystems", "FileSystems", {"MaxItems": 100}),
        tags=_INLINE_KV,
        iam_actions=("elasticfilesystem:DescribeFileSystems",),
        arn_field="FileSystemArn",
        id_field="FileSystemId",
        name_field="Name",
        exclude=(Exclude("LifeCycleState", ("deleting", "deleted"), "file system is deleted"),),
        attributes={"size_bytes": "SizeInBytes.Value", "performance_mode": "PerformanceMode"},
    )
)

# -------------------------------------------------------------------------------- Integration
register(
    ResourceTypeInfo(
        resource_type="kinesis:stream",
        service="kinesis",
        api_family="kinesis",
        group="kinesis",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("ListStreams", "StreamSummaries", {"Limit": 1000}),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForStream",
            params={"StreamName": "@name"},
            static_params={"Limit": 50},
            path="Tags",
            # No botocore paginator: pages continue from the last key while HasMoreTags is true.
            pagination=PageSpec(
                input_token="ExclusiveStartTagKey", output_token="Tags[-1].Key", more_results="HasMoreTags"
            ),
            missing_codes=("ResourceNotFoundException",),
        ),
        iam_actions=("kinesis:ListStreams", "kinesis:ListTagsForStream"),
        arn_field="StreamARN",
        name_field="StreamName",
        exclude=(Exclude("StreamStatus", ("DELETING",), "stream is being deleted"),),
        attributes={"status": "StreamStatus", "mode": "StreamModeDetails.StreamMode"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="sqs:queue",
        service="sqs",
        api_family="sqs",
        group="sqs",
        shape=CollectorShape.LIST_THEN_TAG,
        # Without MaxResults ListQueues stops at 1,000 queues and returns no token.
        listing=ListSpec("ListQueues", "QueueUrls", {"MaxResults": 1000}, scalar_field="QueueUrl"),
        tags=TagSpec(
            tagging_api_filter="sqs:queue",
            source=TagSource.PER_ITEM,
            operation="ListQueueTags",
            params={"QueueUrl": "QueueUrl"},
            path="Tags",
            shape=TagShape.DICT,
            missing_codes=("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
        ),
        iam_actions=("sqs:ListQueues", "sqs:ListQueueTags"),
        name_field="QueueUrl",
        name_transform=Transform.BASENAME,
        arn_template="arn:{partition}:sqs:{region}:{account}:{name}",
        attributes={"url": "QueueUrl"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="sns:topic",
        service="sns",
        api_family="sns",
        group="sns",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("ListTopics", "Topics"),
        tags=TagSpec(
            tagging_api_filter="sns:topic",
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"ResourceArn": "@arn"},
            path="Tags",
            missing_codes=("NotFound", "ResourceNotFound"),
        ),
        iam_actions=("sns:ListTopics", "sns:ListTagsForResource"),
        arn_field="TopicArn",
        name_field="TopicArn",
        name_transform=Transform.AFTER_LAST_COLON,
    )
)

register(
    ResourceTypeInfo(
        resource_type="logs:log-group",
        service="logs",
        api_family="logs",
        group="logs",
        shape=CollectorShape.LIST_THEN_TAG,
        listing=ListSpec("DescribeLogGroups", "logGroups", {"limit": 50}),
        tags=TagSpec(
            source=TagSource.PER_ITEM,
            operation="ListTagsForResource",
            params={"resourceArn": "@arn"},
            path="tags",
            shape=TagShape.DICT,
            missing_codes=("ResourceNotFoundException",),
        ),
        iam_actions=("logs:DescribeLogGroups", "logs:ListTagsForResource"),
        name_field="logGroupName",
        # Built rather than read: DescribeLogGroups' "arn" ends in ":*", which tagging APIs reject.
        arn_template="arn:{partition}:logs:{region}:{account}:log-group:{name}",
        attributes={"retention_days": "retentionInDays", "stored_bytes": "storedBytes"},
    )
)

# ---------------------------------------------------------------------------------- Security
register(
    ResourceTypeInfo(
        resource_type="secretsmanager:secret",
        service="secretsmanager",
        api_family="secretsmanager",
        group="secretsmanager",
        shape=CollectorShape.DESCRIBE_INLINE_TAGS,
        listing=ListSpec("ListSecrets", "SecretList", {"MaxResults": 100}),
        tags=_INLINE_KV,
        iam_actions=("secretsmanager:ListSecrets",),
        arn_field="ARN",
        name_field="Name",
        attributes={"last_accessed": "LastAccessedDate", "rotation_enabled": "RotationEnabled"},
    )
)

register(
    ResourceTypeInfo(
        resource_type="kms:key",
        service="kms",
        api_family="kms",
        group="kms",
        shape=CollectorShape.LIST_THEN_DESCRIBE,
        listing=ListSpec("ListKeys", "Keys", {"Limit": 1000}),
        # ListKeys does not say who manages a key; DescribeKey does.
        describe=DescribeSpec(
            "DescribeKey", "KeyMetadata", params={"KeyId": "KeyId"}, missing_codes=("NotFoundException",)
        ),
        tags=TagSpec(
            tagging_api_filter="kms:key",
            source=TagSource.PER_ITEM,
            operation="ListResourceTags",
            params={"KeyId": "@id"},
            path="Tags",
            key_field="TagKey",
            value_field="TagValue",
            pagination="botocore",
            missing_codes=("NotFoundException",),
        ),
        iam_actions=("kms:ListKeys", "kms:DescribeKey", "kms:ListResourceTags"),
        arn_field="Arn",
        id_field="KeyId",
        name_field="Description",
        exclude=(Exclude("KeyManager", ("AWS",), "AWS-managed keys cannot be tagged"),),
        attributes={"key_state": "KeyState", "key_spec": "KeySpec", "key_usage": "KeyUsage"},
    )
)
