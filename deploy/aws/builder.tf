# Optional: `wharf builder` alone on its own instances, sharing the store.
# A builder that dies mid-build is safe: its lease expires and another
# builder (or a node) takes the build over, so builders need no drain hook.

resource "aws_launch_template" "builder" {
  count         = var.builder_count > 0 ? 1 : 0
  name_prefix   = "${var.name}-builder-"
  image_id      = local.ami_id
  instance_type = var.builder_instance_type
  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", merge(local.user_data_common, {
    role     = "builder"
    settings = var.builder_settings
  })))

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  vpc_security_group_ids = [aws_security_group.node.id]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
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
    tags          = { Name = "${var.name}-builder" }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_autoscaling_group" "builders" {
  count               = var.builder_count > 0 ? 1 : 0
  name                = local.builder_asg_name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.builder_count
  max_size            = var.builder_count
  desired_capacity    = var.builder_count
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.builder[0].id
    version = aws_launch_template.builder[0].latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-builder"
    propagate_at_launch = true
  }
}
