# The EC2 capacity exists only when asked for, is sized from how many tasks fit on one instance,
# and a task that fits on no instance is refused at plan time. Mocked provider: no account needed.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  # c7g.large as DescribeInstanceTypes reports it.
  mock_data "aws_ec2_instance_type" {
    defaults = { memory_size = 4096, default_vcpus = 2, maximum_network_interfaces = 3 }
  }
}

variables {
  name                     = "websocket-test"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0123456789abcdef0"]
  instances_need_public_ip = true
}

run "fargate_only_by_default" {
  command = plan

  assert {
    condition = (
      length(aws_autoscaling_group.this) + length(aws_launch_template.this) + length(aws_ecs_capacity_provider.ec2) +
      length(aws_iam_role.instance) + length(aws_iam_instance_profile.instance) + length(aws_security_group.instance) +
      length(data.aws_ssm_parameter.ecs_optimized_arm64_ami) + length(data.aws_ec2_instance_type.instance)
    ) == 0
    error_message = "Without enable_ec2_capacity no EC2 resource, AMI lookup or instance type lookup may exist."
  }
  assert {
    condition     = aws_ecs_cluster_capacity_providers.this.capacity_providers == toset(["FARGATE"])
    error_message = "The cluster has Fargate capacity only."
  }
  assert {
    condition     = output.ec2_capacity_provider_name == null && output.tasks_per_instance == null
    error_message = "The EC2 outputs are null without EC2 capacity."
  }
}

run "ec2_capacity_sized_from_tasks_per_instance" {
  command = plan

  variables {
    enable_ec2_capacity = true
    task_cpu            = 512
    task_memory         = 1024
    max_tasks           = 20
  }

  # 4096 MiB less 5 % less 256 MiB leaves 3635 MiB: 3 tasks of 1024 by memory, 4 by CPU, 2 by
  # network interfaces (3, one the instance's) -> 2 per instance, 10 instances for 20 tasks.
  assert {
    condition     = output.tasks_per_instance == 2 && aws_autoscaling_group.this[0].max_size == 10
    error_message = "Two tasks fit a c7g.large (network interfaces), so 20 tasks need 10 instances."
  }
  assert {
    condition     = aws_ecs_capacity_provider.ec2[0].name == "websocket-test-ec2" && contains(aws_ecs_cluster_capacity_providers.this.capacity_providers, "websocket-test-ec2")
    error_message = "The EC2 capacity provider joins the cluster's providers."
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.this[0].user_data), "ECS_RESERVED_MEMORY=256")
    error_message = "The agent reserves the memory the fit calculation assumes."
  }
}

run "memory_decides_for_the_default_task" {
  command = plan

  variables {
    enable_ec2_capacity = true
    max_tasks           = 20
  }

  assert {
    condition     = output.tasks_per_instance == 1 && output.max_instances == 20
    error_message = "One 2 GiB task fits a c7g.large's 3635 MiB of task memory."
  }
}

run "a_task_that_fits_no_instance_is_refused" {
  command = plan

  variables {
    enable_ec2_capacity = true
    task_cpu            = 1024
    task_memory         = 4096
  }

  expect_failures = [aws_autoscaling_group.this]
}

run "capacity_provider_names_ecs_reserves_are_refused" {
  command = plan

  variables {
    name = "ecs-websocket"
  }

  expect_failures = [var.name]
}
