output "url" {
  description = "Wharf's URL: the management API under /api/v1, webhooks under /run/{tenant}/{function}."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "alb_dns_name" {
  description = "The load balancer's DNS name (point a CNAME or an alias record at it)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "The load balancer's hosted zone, for a Route 53 alias record."
  value       = aws_lb.this.zone_id
}

output "asg_name" {
  description = "The nodes' Auto Scaling group (aws autoscaling start-instance-refresh --auto-scaling-group-name ...)."
  value       = aws_autoscaling_group.nodes.name
}

output "builder_asg_name" {
  description = "The builders' Auto Scaling group, if any."
  value       = var.builder_count > 0 ? aws_autoscaling_group.builders[0].name : null
}

output "target_group_arn" {
  description = "The nodes' target group."
  value       = aws_lb_target_group.nodes.arn
}

output "node_security_group_id" {
  description = "Security group of the nodes and builders: allow it into your MongoDB."
  value       = aws_security_group.node.id
}

output "node_role_arn" {
  description = "The instances' IAM role."
  value       = aws_iam_role.node.arn
}

output "ssm_parameters" {
  description = "The SSM parameters the instances read at each start of wharf."
  value       = local.parameter_names
}
