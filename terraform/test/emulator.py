"""Reads the moto emulator through boto3 and checks what `terraform apply` and `destroy` left there.

    python3 emulator.py inventory                   > before.json   # everything that exists
    python3 emulator.py deployed   OUTPUTS.json     # the deployment is whole and closed
    python3 emulator.py secrets    OUTPUTS.json     # prints every secret value, one per line (for leak checks)
    python3 emulator.py consistent OUTPUTS.json     # the load balancer accepts what CloudFront sends, and only
                                                    # the values the secret's document holds
    python3 emulator.py wait-deployed ID            # waits until the distribution reports Deployed
    python3 emulator.py rotated    OUTPUTS.json OLD # a rotation replaced OLD everywhere; OLD is refused
    python3 emulator.py destroyed  before.json      # nothing is left but what existed before

The endpoint, region and dummy credentials come from the environment (AWS_ENDPOINT_URL...), which
the e2e script points at its own moto_server on 127.0.0.1.
"""

import json
import re
import sys
import time

import boto3

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
SECRET = re.compile(r"^[0-9a-f]{64}$")


class Failure(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)
    print(f"  ok: {message}")


def client(name):
    return boto3.client(name)


def describe_services(ecs, cluster):
    arns = ecs.list_services(cluster=cluster)["serviceArns"]
    return ecs.describe_services(cluster=cluster, services=arns)["services"] if arns else []


def inventory():
    """Identifiers of every kind of resource the root module creates, as sorted lists per kind."""
    ec2, elbv2, ecs = client("ec2"), client("elbv2"), client("ecs")
    cloudfront, iam, logs = client("cloudfront"), client("iam"), client("logs")
    elasticache = client("elasticache")
    clusters = ecs.list_clusters()["clusterArns"]
    found = {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]],
        "security_groups": [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]],
        "internet_gateways": [g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]],
        "route_tables": [t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]],
        "nat_gateways": [n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"],
        "addresses": [a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]],
        "launch_templates": [t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"]],
        "autoscaling_groups": [g["AutoScalingGroupName"] for g in client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]],
        "load_balancers": [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]],
        "target_groups": [tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]],
        "distributions": [d["Id"] for d in cloudfront.list_distributions()["DistributionList"].get("Items", [])],
        "buckets": [b["Name"] for b in client("s3").list_buckets()["Buckets"]],
        "ecr_repositories": [r["repositoryName"] for r in client("ecr").describe_repositories()["repositories"]],
        "ecs_clusters": [c["clusterArn"] for c in ecs.describe_clusters(clusters=clusters)["clusters"] if c["status"] == "ACTIVE"] if clusters else [],
        # A deleted service stays describable as INACTIVE for a while, in AWS as in moto.
        "ecs_services": [s["serviceArn"] for c in clusters for s in describe_services(ecs, c) if s["status"] != "INACTIVE"],
        "ecs_task_definitions": ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"],
        "ecs_capacity_providers": [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"] if p["name"] not in ("FARGATE", "FARGATE_SPOT")],
        "scalable_targets": [t["ResourceId"] for t in client("application-autoscaling").describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]],
        "scaling_policies": [p["PolicyName"] for p in client("application-autoscaling").describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]],
        "lambda_functions": [f["FunctionName"] for f in client("lambda").list_functions()["Functions"]],
        "iam_roles": [r["RoleName"] for r in iam.list_roles()["Roles"]],
        "iam_instance_profiles": [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]],
        "log_groups": [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]],
        "replication_groups": [g["ReplicationGroupId"] for g in elasticache.describe_replication_groups()["ReplicationGroups"]],
        "cache_subnet_groups": [g["CacheSubnetGroupName"] for g in elasticache.describe_cache_subnet_groups()["CacheSubnetGroups"] if g["CacheSubnetGroupName"] != "default"],
        "secrets": [s["ARN"] for s in client("secretsmanager").list_secrets()["SecretList"]],
        "alarms": [a["AlarmName"] for a in client("cloudwatch").describe_alarms()["MetricAlarms"]],
        "dashboards": [d["DashboardName"] for d in client("cloudwatch").list_dashboards()["DashboardEntries"]],
        "event_rules": [r["Name"] for r in client("events").list_rules()["Rules"]],
        "sns_topics": [t["TopicArn"] for t in client("sns").list_topics()["Topics"]],
        # CloudFront's log deliveries live in us-east-1, which is also the e2e's region.
        "log_delivery_sources": [d["name"] for d in logs.describe_delivery_sources()["deliverySources"]],
        "log_delivery_destinations": [d["name"] for d in logs.describe_delivery_destinations()["deliveryDestinations"]],
        "log_deliveries": [d["id"] for d in logs.describe_deliveries()["deliveries"]],
    }
    return {kind: sorted(ids) for kind, ids in found.items()}


def origin_header(distribution_config, header_name):
    (origin,) = distribution_config["Origins"]["Items"]
    headers = {h["HeaderName"]: h["HeaderValue"] for h in origin.get("CustomHeaders", {}).get("Items", [])}
    return headers.get(header_name)


def deployment(outputs):
    """The distribution, its origin header and the listener rule's accepted values."""
    cloudfront, elbv2 = client("cloudfront"), client("elbv2")
    distribution_id = outputs["cloudfront_distribution_id"]["value"]
    config = cloudfront.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    (load_balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=load_balancer["LoadBalancerArn"])["Listeners"]
    rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    (secret_rule,) = [r for r in rules if r["Priority"] == "1"]
    (condition,) = secret_rule["Conditions"]
    return config, load_balancer, listener, rules, secret_rule, condition


def check_deployed(outputs):
    config, load_balancer, listener, rules, secret_rule, condition = deployment(outputs)
    header_name = condition["HttpHeaderConfig"]["HttpHeaderName"]
    accepted = condition["HttpHeaderConfig"]["Values"]
    value = origin_header(config, header_name)

    print("CloudFront origin and listener rule")
    check(condition["Field"] == "http-header", f"rule 1 matches on the request header {header_name}")
    check(value is not None, f"the origin carries {header_name} (drawn by custom-header-fn into Secrets Manager)")
    check(document(outputs) == {"current": value}, "the secret's document holds that value, as current")
    check(SECRET.fullmatch(value) is not None, "its value is 64 lowercase hex characters")
    check(accepted == [value], "the listener rule requires exactly the origin's value")
    check([a["Type"] for a in secret_rule["Actions"]] == ["forward"], "rule 1 forwards to the target group")
    check(len(rules) == 2 and rules[-1]["IsDefault"], "no other rule than the secret one and the default")
    # With domain_name the one listener is HTTPS on 443 (origin_protocol https), else HTTP on 80.
    protocol = outputs["origin_protocol"]["value"].upper()
    port = 443 if protocol == "HTTPS" else 80
    check(listener["Port"] == port and listener["Protocol"] == protocol, f"the listener is {protocol} on port {port}")
    (default,) = listener["DefaultActions"]
    check(default["Type"] == "fixed-response" and default["FixedResponseConfig"]["StatusCode"] == "403", "the listener's default action is a fixed 403")

    print("CloudFront behaviour")
    behavior = config["DefaultCacheBehavior"]
    check(behavior["ViewerProtocolPolicy"] == "https-only", "viewers must use HTTPS")
    check(behavior.get("CachePolicyId") == CACHING_DISABLED, "caching is disabled (managed CachingDisabled policy)")
    check(len(behavior["AllowedMethods"]["Items"]) == 7, "all methods are allowed")
    check(not config["Logging"]["Enabled"], "no legacy (S3, ACL) logging, which fails in opt-in regions")
    logs = client("logs")
    (source,) = logs.describe_delivery_sources()["deliverySources"]
    (delivery,) = logs.describe_deliveries()["deliveries"]
    (destination,) = logs.describe_delivery_destinations()["deliveryDestinations"]
    distribution_arn = cloudfront_arn(outputs)
    check(source["logType"] == "ACCESS_LOGS" and source["resourceArns"] == [distribution_arn], "standard logging v2 takes the distribution's access logs")
    check(
        delivery["deliverySourceName"] == source["name"] and delivery["deliveryDestinationArn"] == destination["arn"]
        and destination["deliveryDestinationConfiguration"]["destinationResourceArn"].endswith(f"log-group:{outputs['access_log_group_name']['value']}"),
        f"and delivers them to the log group {outputs['access_log_group_name']['value']}",
    )

    print("Load balancer")
    attributes = {a["Key"]: a["Value"] for a in client("elbv2").describe_load_balancer_attributes(LoadBalancerArn=load_balancer["LoadBalancerArn"])["Attributes"]}
    check(attributes.get("routing.http.drop_invalid_header_fields.enabled") == "true", "it drops invalid header fields")
    ec2 = client("ec2")
    (prefix_list,) = ec2.describe_managed_prefix_lists(Filters=[{"Name": "prefix-list-name", "Values": [CLOUDFRONT_PREFIX_LIST]}])["PrefixLists"]
    (group,) = ec2.describe_security_groups(GroupIds=load_balancer["SecurityGroups"])["SecurityGroups"]
    ingress = group["IpPermissions"]
    check(len(ingress) == 1, "its security group has a single ingress permission")
    (permission,) = ingress
    check(
        [p["PrefixListId"] for p in permission.get("PrefixListIds", [])] == [prefix_list["PrefixListId"]]
        and not permission.get("IpRanges") and not permission.get("Ipv6Ranges") and not permission.get("UserIdGroupPairs"),
        "it admits only CloudFront's origin-facing prefix list",
    )
    check((permission["IpProtocol"], permission["FromPort"], permission["ToPort"]) == ("tcp", port, port), f"on TCP port {port} only")

    print("ECS")
    ecs = client("ecs")
    cluster, service = outputs["cluster_name"]["value"], outputs["service_name"]["value"]
    (described,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
    task_definition = ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]
    check(task_definition["runtimePlatform"]["cpuArchitecture"] == "ARM64", "the task definition is ARM64")
    (container,) = task_definition["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    drain = int(environment["DRAIN_TIMEOUT"].rstrip("s"))
    check(container.get("readonlyRootFilesystem") is True and container.get("user") not in (None, "", "0", "root"), "the container is non-root with a read-only root filesystem")
    check(drain < container["stopTimeout"] <= 120, f"stopTimeout {container['stopTimeout']} s exceeds DRAIN_TIMEOUT {drain} s and Fargate's limit")
    check(container["healthCheck"]["command"][1:] == ["/usr/local/bin/websocket-server", "healthcheck"], "the container health check is the binary's healthcheck")
    (target_group,) = client("elbv2").describe_target_groups(LoadBalancerArn=load_balancer["LoadBalancerArn"])["TargetGroups"]
    delay = {a["Key"]: a["Value"] for a in client("elbv2").describe_target_group_attributes(TargetGroupArn=target_group["TargetGroupArn"])["Attributes"]}["deregistration_delay.timeout_seconds"]
    check(int(delay) == drain, "the deregistration delay equals the drain time")
    check(int(attributes["idle_timeout.timeout_seconds"]) > int(environment["PING_INTERVAL"].rstrip("s")), "the ALB idle timeout exceeds the ping interval")
    policies = client("application-autoscaling").describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    metrics = sorted(
        p["TargetTrackingScalingPolicyConfiguration"].get("CustomizedMetricSpecification", {}).get("MetricName")
        or p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
        for p in policies
    )
    check(metrics == ["ActiveConnections", "ECSServiceAverageCPUUtilization"], "target tracking on CPU and on connections per task")

    print("Redis backplane")
    (group,) = client("elasticache").describe_replication_groups()["ReplicationGroups"]
    check(group["TransitEncryptionEnabled"] and group["AuthTokenEnabled"] and group["AtRestEncryptionEnabled"], "the replication group uses TLS, an auth token and encryption at rest")
    secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
    check(set(secrets) == {"REDIS_URL"} and "REDIS_URL" not in environment, "REDIS_URL comes from Secrets Manager, not from the plain environment")
    url = client("secretsmanager").get_secret_value(SecretId=secrets["REDIS_URL"])["SecretString"]
    endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
    shown = re.sub(r"(?<=rediss://:)[^@]*", lambda token: f"<{len(token[0])} characters>", url)
    check(
        re.fullmatch(rf"rediss://:[A-Za-z0-9]{{64}}@{re.escape(endpoint['Address'])}:{endpoint['Port']}", url) is not None,
        f"the secret holds rediss://:TOKEN@primary:port ({shown}, primary {endpoint['Address']}:{endpoint['Port']})",
    )
    (cache_group,) = ec2.describe_security_groups(GroupIds=[g["SecurityGroupId"] for g in client("elasticache").describe_cache_clusters(CacheClusterId=group["MemberClusters"][0])["CacheClusters"][0]["SecurityGroups"]])["SecurityGroups"]
    (permission,) = cache_group["IpPermissions"]
    check(
        [p["GroupId"] for p in permission.get("UserIdGroupPairs", [])] == described["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] and not permission.get("IpRanges"),
        "the cache admits the tasks' security group only",
    )


def cloudfront_arn(outputs):
    distribution_id = outputs["cloudfront_distribution_id"]["value"]
    return client("cloudfront").get_distribution(Id=distribution_id)["Distribution"]["ARN"]


def document(outputs):
    """The origin secret's document: {"current", "pending"?, "previous"?}."""
    secret_id = outputs["origin_secret_rotation"]["value"]["input"]["SecretId"]
    return json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])


def secret_values(outputs):
    """Every secret of the deployment in clear: the origin header's values and the Redis token."""
    values = list(document(outputs).values())
    secretsmanager = client("secretsmanager")
    for secret in secretsmanager.list_secrets()["SecretList"]:
        if "-redis-token-" in secret["Name"]:
            values.append(secretsmanager.get_secret_value(SecretId=secret["ARN"])["SecretString"])
    return values


def check_consistent(outputs):
    config, _, _, _, _, condition = deployment(outputs)
    header_name = condition["HttpHeaderConfig"]["HttpHeaderName"]
    accepted = condition["HttpHeaderConfig"]["Values"]
    sent = origin_header(config, header_name)
    held = document(outputs)
    phase = "+".join(sorted(held))
    check(sent in accepted, f"the load balancer accepts the value CloudFront sends (document: {phase})")
    check(sorted(accepted) == sorted(held.values()), "and exactly the values the secret's document holds")


def wait_deployed(distribution_id):
    cloudfront = client("cloudfront")
    for _ in range(60):
        status = cloudfront.get_distribution(Id=distribution_id)["Distribution"]["Status"]
        if status == "Deployed":
            print(f"  ok: {distribution_id} is Deployed")
            return
        time.sleep(0.5)
    raise Failure(f"{distribution_id} is still {status} after 30 s")


def check_rotated(outputs, old):
    config, _, _, _, _, condition = deployment(outputs)
    header_name = condition["HttpHeaderConfig"]["HttpHeaderName"]
    accepted = condition["HttpHeaderConfig"]["Values"]
    new = origin_header(config, header_name)
    print("Rotation")
    check(new is not None and SECRET.fullmatch(new) and new != old, "the origin carries a new secret")
    check(accepted == [new], "the listener rule accepts the new value only: the old one is refused")
    check(document(outputs) == {"current": new}, "the secret's document holds the new value alone")


def check_destroyed(before):
    after = inventory()
    print("Emulator after destroy")
    for kind in before:
        left = sorted(set(after[kind]) - set(before[kind]))
        check(not left, f"no {kind.replace('_', ' ')} left" + (f": {left}" if left else ""))


def main(argv):
    command, *args = argv
    try:
        if command == "inventory":
            json.dump(inventory(), sys.stdout, indent=1)
        elif command == "deployed":
            check_deployed(json.load(open(args[0])))
        elif command == "secret":
            config, *_, condition = deployment(json.load(open(args[0])))
            print(origin_header(config, condition["HttpHeaderConfig"]["HttpHeaderName"]))
        elif command == "secrets":
            print("\n".join(secret_values(json.load(open(args[0])))))
        elif command == "consistent":
            check_consistent(json.load(open(args[0])))
        elif command == "wait-deployed":
            wait_deployed(args[0])
        elif command == "rotated":
            check_rotated(json.load(open(args[0])), args[1])
        elif command == "destroyed":
            check_destroyed(json.load(open(args[0])))
        else:
            raise SystemExit(f"unknown command {command}; see the module docstring")
    except Failure as failure:
        print(f"  FAILED: {failure}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
