# The serving nodes: identical, stateless (everything that must survive is in
# MongoDB), replaced at will.

locals {
  user_data_files = {
    start_wharf       = base64gzip(file("${path.module}/files/start-wharf.sh"))
    lifecycle_agent   = base64gzip(file("${path.module}/files/lifecycle-agent.sh"))
    egress_firewall   = base64gzip(file("${path.module}/files/egress-firewall.sh"))
    wharf_service     = base64gzip(file("${path.module}/files/wharf.service"))
    lifecycle_service = base64gzip(file("${path.module}/files/wharf-lifecycle.service"))
    egress_service    = base64gzip(file("${path.module}/files/wharf-egress.service"))
  }

  user_data_common = merge(local.user_data_files, {
    region              = var.region
    ssm_prefix          = local.ssm_prefix
    node_version        = var.node_version
    wharf_binary_url    = var.wharf_binary_url
    wharf_binary_s3_uri = var.wharf_binary_s3_uri
    wharf_binary_sha256 = var.wharf_binary_sha256
    listen_port         = var.listen_port
    shutdown_timeout    = var.shutdown_timeout
    blocked_cidrs       = join(" ", local.blocked_cidrs)
    egress_deny         = join(",", local.blocked_cidrs)
    asg_name            = local.asg_name
    hook_name           = local.hook_name
    target_group_arn    = aws_lb_target_group.nodes.arn
    deregistration_wait = var.deregistration_delay + 30
  })
}

resource "aws_launch_template" "node" {
  name_prefix   = "${var.name}-node-"
  image_id      = local.ami_id
  instance_type = var.instance_type
  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    role     = "serve"
    settings = var.wharf_settings
  })))

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  vpc_security_group_ids = [aws_security_group.node.id]

  # IMDSv2 only, one hop: wharf on the host reads it; a container behind
  # Docker's bridge (one more hop) never gets a token.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = local.root_dev
    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-node" }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_autoscaling_group" "nodes" {
  name                      = local.asg_name
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity != null ? var.desired_capacity : var.min_size
  target_group_arns         = [aws_lb_target_group.nodes.arn]
  health_check_type         = var.health_check_type
  health_check_grace_period = 600
  default_instance_warmup   = 300
  wait_for_capacity_timeout = "15m"

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  # Before an instance goes (scale-in, instance refresh, an unhealthy
  # replacement), it waits in Terminating:Wait; lifecycle-agent.sh on the
  # instance sees that through the metadata service, leaves the target group,
  # drains wharf and completes the hook.
  initial_lifecycle_hook {
    name                 = local.hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = local.hook_timeout
    default_result       = "CONTINUE"
  }

  # A new launch template version (another wharf binary, node version or
  # setting) replaces the instances a few at a time, each drained first.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 90
      instance_warmup        = 300
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-node"
    propagate_at_launch = true
  }

  lifecycle {
    # Scaling policies own the desired capacity after creation.
    ignore_changes = [desired_capacity]
  }
}

resource "aws_autoscaling_policy" "cpu" {
  count                  = var.target_cpu_percent != null ? 1 : 0
  name                   = "${var.name}-cpu"
  autoscaling_group_name = aws_autoscaling_group.nodes.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.target_cpu_percent
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
  }
}

resource "aws_autoscaling_policy" "requests" {
  count                  = var.target_requests_per_node_per_minute != null ? 1 : 0
  name                   = "${var.name}-requests"
  autoscaling_group_name = aws_autoscaling_group.nodes.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.target_requests_per_node_per_minute
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.nodes.arn_suffix}"
    }
  }
}
