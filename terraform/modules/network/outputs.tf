output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 range of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "IDs of the public subnets, one per availability zone (where the load balancer goes)."
  value       = aws_subnet.public[*].id

  # An internet-facing load balancer can only be created in a VPC with an internet gateway.
  depends_on = [aws_route.public_internet, aws_route_table_association.public]
}

output "private_subnet_ids" {
  description = "IDs of the private subnets; empty unless enable_private_subnets."
  value       = aws_subnet.private[*].id
}

output "workload_subnet_ids" {
  description = "Where tasks and instances belong: the private subnets when they exist, else the public ones."
  value       = var.enable_private_subnets ? aws_subnet.private[*].id : aws_subnet.public[*].id

  # A workload started before its subnet has a route out fails its first image pull.
  depends_on = [
    aws_route.public_internet,
    aws_route_table_association.public,
    aws_route.private_nat,
    aws_route_table_association.private,
  ]
}

output "workloads_need_public_ip" {
  description = "True when workload_subnet_ids are public: with no NAT gateway, a workload reaches ECR and CloudWatch only through a public IP."
  value       = !var.enable_private_subnets
}
