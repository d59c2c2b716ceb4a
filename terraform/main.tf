# Credentials and region come from the environment, as for the AWS CLI (AWS_PROFILE, AWS_REGION...).
provider "aws" {
  default_tags {
    tags = {
      Project   = var.name
      ManagedBy = "terraform"
    }
  }
}

data "aws_region" "current" {}

locals {
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
  subnet_ids     = module.network.public_subnet_ids

  # Timings that must agree with the server's; see README.md, "Stopping a task".
  idle_timeout_seconds         = local.load_balancer_idle_timeout_seconds
  deregistration_delay_seconds = var.drain_timeout_seconds

  origin_secret_header_name   = module.origin_secret.header_name
  origin_secret_header_values = module.origin_secret.accepted_header_values
}

module "cdn" {
  source = "./modules/cdn"

  name               = var.name
  origin_domain_name = module.alb.dns_name
  price_class        = var.price_class
}

module "origin_secret" {
  source = "./modules/origin-secret"

  name               = "${var.name}-origin-secret"
  lambda_zip_path    = var.lambda_zip_path
  architecture       = var.lambda_architecture
  distribution_id    = module.cdn.distribution_id
  distribution_arn   = module.cdn.distribution_arn
  origin_id          = module.cdn.origin_id
  rotation           = var.origin_secret_rotation
  log_retention_days = var.log_retention_days
}

module "ecs_cluster" {
  source = "./modules/ecs-cluster"

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.workload_subnet_ids
  instances_need_public_ip = module.network.workloads_need_public_ip
  instance_type            = var.ec2_instance_type
  max_size                 = var.ec2_max_size
}

module "redis_backplane" {
  source = "./modules/redis-backplane"
  count  = var.enable_redis_backplane ? 1 : 0

  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.workload_subnet_ids
  client_security_group_id = module.ecs_service.security_group_id
  node_type                = var.redis_node_type
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
  ping_interval_seconds       = var.ping_interval_seconds
  # The ALB's idle timeout, so the server's keep-alive timeout outlasts it.
  load_balancer_idle_timeout_seconds = local.load_balancer_idle_timeout_seconds
  log_retention_days                 = var.log_retention_days
  enable_execute_command             = var.enable_execute_command
  secret_environment                 = var.enable_redis_backplane ? { REDIS_URL = module.redis_backplane[0].redis_url_secret_arn } : {}
}
