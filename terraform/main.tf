# Credentials and region come from the environment, as for the AWS CLI (AWS_PROFILE, AWS_REGION...).
provider "aws" {
  default_tags {
    tags = {
      Project   = var.name
      ManagedBy = "terraform"
    }
  }
}

# CloudFront is global: its log deliveries (and, with a custom domain, its certificate) are
# configured in us-east-1 whatever the stack's region.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = {
      Project   = var.name
      ManagedBy = "terraform"
    }
  }
}

data "aws_region" "current" {}

locals {
  # With a domain, CloudFront reaches the load balancer over HTTPS (see the domain module).
  custom_domain = var.domain_name != null
  # Through a VPC origin, the load balancer is internal and in the private subnets.
  vpc_origin = var.origin_access == "vpc"

  # Twice the ping interval, so a WebSocket the server pings is never idle long enough for the ALB
  # to cut it.
  load_balancer_idle_timeout_seconds = 2 * var.ping_interval_seconds
}

module "network" {
  source = "./modules/network"

  name                   = var.name
  enable_private_subnets = var.enable_private_subnets
}

module "ecr" {
  source = "./modules/ecr"

  name = var.name
}

module "alb" {
  source = "./modules/alb"

  name           = var.name
  vpc_id         = module.network.vpc_id
  vpc_cidr_block = module.network.vpc_cidr_block
  subnet_ids     = local.vpc_origin ? module.network.private_subnet_ids : module.network.public_subnet_ids
  internal       = local.vpc_origin
  # Read from CloudFront once its VPC origin exists; null without one.
  vpc_origin_security_group_id = module.cdn.vpc_origin_security_group_id

  # Timings that must agree with the server's; see README.md, "Stopping a task". The delay is the
  # drain, which ecs-service holds to at least DRAIN_SPREAD + 5 s: where the target is deregistered
  # as SIGTERM arrives, the ALB cuts no /v1/ws client before its turn.
  idle_timeout_seconds         = local.load_balancer_idle_timeout_seconds
  deregistration_delay_seconds = var.drain_timeout_seconds

  origin_secret_header_name   = module.origin_secret.header_name
  origin_secret_header_values = module.origin_secret.accepted_header_values
  https                       = local.custom_domain
  certificate_arn             = local.custom_domain ? module.domain[0].origin_certificate_arn : null
}

module "domain" {
  source = "./modules/domain"
  count  = local.custom_domain ? 1 : 0
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  domain_name                 = var.domain_name
  hosted_zone_id              = var.hosted_zone_id
  distribution_domain_name    = module.cdn.domain_name
  distribution_hosted_zone_id = module.cdn.hosted_zone_id
  load_balancer_dns_name      = module.alb.dns_name
  load_balancer_zone_id       = module.alb.zone_id
}

module "cdn" {
  source = "./modules/cdn"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                = var.name
  origin_domain_name  = local.custom_domain ? module.domain[0].origin_domain_name : module.alb.dns_name
  origin_https        = local.custom_domain
  aliases             = local.custom_domain ? [var.domain_name] : []
  acm_certificate_arn = local.custom_domain ? module.domain[0].cloudfront_certificate_arn : null
  vpc_origin = local.vpc_origin ? {
    load_balancer_arn = module.alb.arn
    vpc_id            = module.network.vpc_id
  } : null
  price_class        = var.price_class
  log_retention_days = var.log_retention_days
  origin_secret_header = {
    name  = module.origin_secret.header_name
    value = module.origin_secret.current_header_value
  }
}

module "origin_secret" {
  source = "./modules/origin-secret"

  name               = "${var.name}-origin-secret"
  lambda_zip_path    = var.lambda_zip_path
  architecture       = var.lambda_architecture
  distribution_id    = module.cdn.distribution_id
  distribution_arn   = module.cdn.distribution_arn
  origin_id          = module.cdn.origin_id
  log_retention_days = var.log_retention_days
}

module "ecs_cluster" {
  source = "./modules/ecs-cluster"

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.workload_subnet_ids
  instances_need_public_ip = module.network.workloads_need_public_ip
  enable_ec2_capacity      = var.run_on_ec2
  instance_type            = var.ec2_instance_type
  task_cpu                 = var.task_cpu
  task_memory              = var.task_memory
  # A deployment starts the new tasks before it stops the old ones (maximum percent 200).
  max_tasks = 2 * var.max_capacity
}

module "redis_auth_token" {
  source = "./modules/random-secret"
  count  = var.enable_redis_backplane ? 1 : 0

  name        = "${var.name}-redis-token"
  description = "Auth token of the ${var.name} Valkey backplane"
}

module "redis_backplane" {
  source = "./modules/redis-backplane"
  count  = var.enable_redis_backplane ? 1 : 0

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.workload_subnet_ids
  client_security_group_id = module.ecs_service.security_group_id
  node_type                = var.redis_node_type
  replicas                 = var.redis_replicas
  auth_token_secret = {
    arn        = module.redis_auth_token[0].secret_arn
    version_id = module.redis_auth_token[0].version_id
  }
}

# The key backends publish with (POST /v1/publish, Authorization: Bearer <key>): alphanumeric, so
# it never holds the comma PUBLISH_API_KEYS separates keys with.
module "publish_api_key" {
  source = "./modules/random-secret"
  count  = var.enable_http_publish ? 1 : 0

  name        = "${var.name}-publish-key"
  description = "Key for POST /v1/publish of ${var.name} (Authorization: Bearer <key>)"
}

module "ecs_service" {
  source = "./modules/ecs-service"

  name              = var.name
  cluster_name      = module.ecs_cluster.cluster_name
  capacity_provider = var.run_on_ec2 ? module.ecs_cluster.ec2_capacity_provider_name : module.ecs_cluster.fargate_capacity_provider_name
  vpc_id            = module.network.vpc_id
  subnet_ids        = module.network.workload_subnet_ids
  assign_public_ip  = module.network.workloads_need_public_ip

  image              = "${module.ecr.repository_url}:${var.image_tag}"
  ecr_repository_arn = module.ecr.repository_arn
  cpu                = var.task_cpu
  memory             = var.task_memory

  target_group_arn                = module.alb.target_group_arn
  load_balancer_security_group_id = module.alb.security_group_id

  desired_count               = var.desired_count
  min_capacity                = var.min_capacity
  max_capacity                = var.max_capacity
  max_connections_per_task    = var.max_connections_per_task
  connections_target_per_task = var.connections_target_per_task
  drain_timeout_seconds       = var.drain_timeout_seconds
  drain_spread_seconds        = var.drain_spread_seconds
  ping_interval_seconds       = var.ping_interval_seconds
  # The ALB's idle timeout, so the server's keep-alive timeout outlasts it.
  load_balancer_idle_timeout_seconds = local.load_balancer_idle_timeout_seconds
  log_retention_days                 = var.log_retention_days
  enable_execute_command             = var.enable_execute_command
  extra_environment = var.sign_in == null ? {} : {
    AUTH_JWKS_URL = var.sign_in.jwks_url
    AUTH_ISSUER   = var.sign_in.issuer
    AUTH_AUDIENCE = var.sign_in.audience
    AUTH_LEEWAY   = "${var.sign_in.leeway_seconds}s"
  }
  secret_environment = merge(
    var.enable_redis_backplane ? { REDIS_URL = module.redis_backplane[0].redis_url_secret_arn } : {},
    var.enable_http_publish ? { PUBLISH_API_KEYS = module.publish_api_key[0].secret_arn } : {},
  )
}

module "monitoring" {
  source = "./modules/monitoring"

  name                     = var.name
  service_name             = module.ecs_service.service_name
  cluster_name             = module.ecs_cluster.cluster_name
  load_balancer_arn_suffix = module.alb.arn_suffix
  target_group_arn_suffix  = module.alb.target_group_arn_suffix
  min_capacity             = var.min_capacity
  max_capacity             = var.max_capacity
  log_group_name           = module.ecs_service.log_group_name
  log_retention_days       = var.log_retention_days
  enable_backplane         = var.enable_redis_backplane
  alarm_email              = var.alarm_email
}
