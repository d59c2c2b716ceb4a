"""Test only: moto_server with the gaps of moto 5.2.5 that the root module runs into filled in.

Each gap makes moto answer differently from AWS, so the real AWS provider either retries for many
minutes or sees drift that AWS would not show, and `terraform plan` after `apply` could never be
empty. Each patch below makes moto keep or omit exactly what AWS keeps or omits, no more:

- Application Auto Scaling has no tagging calls (the provider tags every scalable target).
- A security group rule loses its description when its source is a prefix list or a security group.
- A launch template reports its own tags as tag specifications of its instances' data.
- ECS services forget capacityProviderStrategy, deploymentConfiguration,
  healthCheckGracePeriodSeconds, enableExecuteCommand, placementStrategy and
  availabilityZoneRebalancing.
- CloudFront reports ForwardedValues on a behaviour that uses a cache policy, an SSL support
  method for the default certificate, and a viewer certificate given only an ACMCertificateArn
  (what the provider sends with acm_certificate_arn) as CloudFrontDefaultCertificate true, source
  "cloudfront" (AWS: false, "acm"), so a domain deployment's plan after apply is never empty.
- ECS DescribeCapacityProviders fails without names instead of describing them all (emulator.py
  lists them that way to prove that `terraform destroy` left none behind).
- An ElastiCache replication group has no member cache clusters (the provider reads them), is never
  deleted (stays "deleting"), and a cache subnet group cannot be deleted.
- ECS's service-linked role is named AWSServiceRoleForecs instead of AWSServiceRoleForECS, so the
  script that creates it before the first apply would never find it.
- CreateTargetGroup and CreateLoadBalancer are idempotent in AWS (the same call again returns the
  existing one); moto refuses the target group (DuplicateTargetGroupName) and makes a second load
  balancer, so a call the provider retries after a slow answer failed the apply or leaked one.

    python3 moto_server.py -H 127.0.0.1 -p PORT    (the arguments of moto_server)
"""

import functools
import json
import sys

from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
from moto.cloudfront import models as cloudfront
from moto.ec2.models.launch_templates import LaunchTemplateBackend
from moto.ec2.models.security_groups import SecurityGroupRule
from moto.core.responses import EmptyResult
from moto.ecs.models import EC2ContainerServiceBackend
from moto.elasticache.models import ElastiCacheBackend
from moto.elbv2.models import ELBv2Backend
from moto.iam import models as iam
from moto.elasticache.responses import ElastiCacheResponse
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.server import main


def after(cls, name):
    """Replaces cls.name by a wrapper that runs the original, then the decorated function."""

    def decorate(then):
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            then(self, result, *args, **kwargs)
            return result

        setattr(cls, name, wrapper)
        return then

    return decorate


# --- Application Auto Scaling tags, per ARN (one moto process serves one test run).
tags_by_arn: dict[str, dict[str, str]] = {}


@after(ApplicationAutoScalingResponse, "register_scalable_target")
def _(self, body):
    tags_by_arn.setdefault(json.loads(body)["ScalableTargetARN"], {}).update(self._get_param("Tags") or {})


def tag_resource(self):
    tags_by_arn.setdefault(self._get_param("ResourceARN"), {}).update(self._get_param("Tags") or {})
    return "{}"


def untag_resource(self):
    tags = tags_by_arn.get(self._get_param("ResourceARN"), {})
    for key in self._get_param("TagKeys") or []:
        tags.pop(key, None)
    return "{}"


def list_tags_for_resource(self):
    return json.dumps({"Tags": tags_by_arn.get(self._get_param("ResourceARN"), {})})


ApplicationAutoScalingResponse.tag_resource = tag_resource
ApplicationAutoScalingResponse.untag_resource = untag_resource
ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource


# --- Security group rules keep the description given with a source group or prefix list.
@after(SecurityGroupRule, "__init__")
def _(self, _, *args, **kwargs):
    names = ("ec2_backend", "ip_protocol", "group_id", "from_port", "to_port", "ip_range", "source_group", "prefix_list_id")
    given = dict(zip(names, args)) | kwargs
    self.source_description = (given.get("source_group") or {}).get("Description") or (given.get("prefix_list_id") or {}).get("Description")


SecurityGroupRule.description = property(lambda self: self.ip_range.get("Description") or getattr(self, "source_description", None))


# --- Launch templates: the template's own tags ("launch-template") are not part of its data.
create_launch_template = LaunchTemplateBackend.create_launch_template


@functools.wraps(create_launch_template)
def create_launch_template_without_own_tags(self, name, description, template_data, tag_spec):
    specifications = [s for s in template_data.get("TagSpecifications", []) if s.get("ResourceType") != "launch-template"]
    if specifications:
        template_data["TagSpecifications"] = specifications
    else:
        template_data.pop("TagSpecifications", None)
    return create_launch_template(self, name, description, template_data, tag_spec)


LaunchTemplateBackend.create_launch_template = create_launch_template_without_own_tags

# --- ECS services keep the settings they were created or updated with.
SERVICE_SETTINGS = {
    "capacityProviderStrategy": "capacity_provider_strategy",
    "deploymentConfiguration": "deployment_configuration",
    "healthCheckGracePeriodSeconds": "health_check_grace_period_seconds",
    "enableExecuteCommand": "enable_execute_command",
    "placementStrategy": "placement_strategy",
    "availabilityZoneRebalancing": "availability_zone_rebalancing",
}


def keep_service_settings(self, _):
    cluster = self._get_param("cluster", "default")
    (service,), _ = self.ecs_backend.describe_services(cluster, [self._get_param("serviceName") or self._get_param("service")])
    for parameter, attribute in SERVICE_SETTINGS.items():
        value = self._get_param(parameter)
        if value is not None:
            setattr(service, attribute, value)
    if getattr(service, "availability_zone_rebalancing", None) is None:
        service.availability_zone_rebalancing = "DISABLED"  # what ECS reports when it was not set


after(EC2ContainerServiceResponse, "create_service")(keep_service_settings)
after(EC2ContainerServiceResponse, "update_service")(keep_service_settings)

describe_capacity_providers = EC2ContainerServiceBackend.describe_capacity_providers


@functools.wraps(describe_capacity_providers)
def describe_all_capacity_providers_by_default(self, names):
    return describe_capacity_providers(self, names if names is not None else list(self.capacity_providers))


EC2ContainerServiceBackend.describe_capacity_providers = describe_all_capacity_providers_by_default


# --- CloudFront reports only the legacy cache settings and SSL support method it was given.
@after(cloudfront.DefaultCacheBehaviour, "__init__")
def _(self, _, config):
    if "ForwardedValues" not in config:
        self.forwarded_values = None


@after(cloudfront.ViewerCertificate, "__init__")
def _(self, _, config):
    if "SSLSupportMethod" not in config:
        self.ssl_support_method = None
    if "CloudFrontDefaultCertificate" not in config and (config.get("ACMCertificateArn") or config.get("IAMCertificateId")):
        self.cloud_front_default_certificate = False
    if config.get("ACMCertificateArn"):
        self.certificate_source = "acm"
    elif config.get("IAMCertificateId"):
        self.certificate_source = "iam"



# --- ElastiCache: a replication group's member clusters exist while the group does.
@after(ElastiCacheBackend, "create_replication_group")
def _(self, group, **given):
    # A primary and num_cache_clusters - 1 replicas, named as ElastiCache names them.
    wanted = given.get("num_cache_clusters") or len(group.member_clusters)
    group.member_clusters = [f"{group.replication_group_id}-{number:03d}" for number in range(1, wanted + 1)]
    for member in group.member_clusters:
        arguments = dict.fromkeys(ElastiCacheBackend.create_cache_cluster.__code__.co_varnames[1:33])
        arguments.update(
            cache_cluster_id=member,
            replication_group_id=group.replication_group_id,
            num_cache_nodes=1,
            cache_node_type=group.cache_node_type,
            engine=group.engine,
            engine_version=group.engine_version,
            cache_subnet_group_name=group.cache_subnet_group_name,
            transit_encryption_enabled=group.transit_encryption_enabled,
            port=group.port,
            snapshot_retention_limit=group.snapshot_retention_limit,
            security_group_ids=group.security_group_ids,
            tags=[],
        )
        cluster = self.create_cache_cluster(**arguments)
        cluster.security_groups = [{"SecurityGroupId": g, "Status": "active"} for g in group.security_group_ids or []]
        cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled


@after(ElastiCacheBackend, "delete_replication_group")
def _(self, group, replication_group_id, **_):
    for member in self.replication_groups.pop(replication_group_id).member_clusters + [group.primary_cluster_id]:
        self.cache_clusters.pop(member, None)


def delete_cache_subnet_group(self):
    self.elasticache_backend.cache_subnet_groups.pop(self._get_param("CacheSubnetGroupName"))
    return EmptyResult()


ElastiCacheResponse.delete_cache_subnet_group = delete_cache_subnet_group

# --- ELBv2: creating what exists with the same settings returns it, as AWS does.
create_target_group = ELBv2Backend.create_target_group


@functools.wraps(create_target_group)
def create_target_group_idempotently(self, name, **settings):
    for group in self.target_groups.values():
        if group.name == name and (group.vpc_id, group.protocol, str(group.port)) == (settings.get("vpc_id"), settings.get("protocol"), str(settings.get("port"))):
            return group
    return create_target_group(self, name, **settings)


ELBv2Backend.create_target_group = create_target_group_idempotently

create_load_balancer = ELBv2Backend.create_load_balancer


@functools.wraps(create_load_balancer)
def create_load_balancer_idempotently(self, name, *args, **settings):
    for balancer in self.load_balancers.values():
        if balancer.name == name:
            return balancer
    return create_load_balancer(self, name, *args, **settings)


ELBv2Backend.create_load_balancer = create_load_balancer_idempotently

# --- IAM: the service-linked role's name, as AWS spells it.
iam.SERVICE_NAME_CONVERSION["ecs"] = "ECS"

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
