# The EC2 capacity used to exist unconditionally; since it became optional (count), these keep a
# deployment that runs on it from destroying and recreating each resource under the same fixed
# names (which would collide), and let one that does not use it delete them.

moved {
  from = aws_iam_role.instance
  to   = aws_iam_role.instance[0]
}

moved {
  from = aws_iam_role_policy_attachment.instance_ecs_agent
  to   = aws_iam_role_policy_attachment.instance_ecs_agent[0]
}

moved {
  from = aws_iam_instance_profile.instance
  to   = aws_iam_instance_profile.instance[0]
}

moved {
  from = aws_security_group.instance
  to   = aws_security_group.instance[0]
}

moved {
  from = aws_vpc_security_group_egress_rule.instance_https
  to   = aws_vpc_security_group_egress_rule.instance_https[0]
}

moved {
  from = aws_launch_template.this
  to   = aws_launch_template.this[0]
}

moved {
  from = aws_autoscaling_group.this
  to   = aws_autoscaling_group.this[0]
}

moved {
  from = aws_ecs_capacity_provider.ec2
  to   = aws_ecs_capacity_provider.ec2[0]
}
