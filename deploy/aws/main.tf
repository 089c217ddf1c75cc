data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

# The latest official Debian 12 image, or the one ami_id names.
data "aws_ami" "node" {
  most_recent = true
  owners      = var.ami_id == "" ? ["136693071363"] : [] # Debian's account

  filter {
    name   = var.ami_id == "" ? "name" : "image-id"
    values = [var.ami_id == "" ? "debian-12-${var.architecture == "arm64" ? "arm64" : "amd64"}-*" : var.ami_id]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  account    = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  ami_id     = data.aws_ami.node.id
  root_dev   = data.aws_ami.node.root_device_name
  ssm_prefix = var.ssm_prefix != "" ? var.ssm_prefix : "/${var.name}"

  # Names fixed here (not read back from the resources) so that the user
  # data and the IAM policy can name the group without a dependency cycle.
  asg_name         = "${var.name}-nodes"
  builder_asg_name = "${var.name}-builders"
  hook_name        = "${var.name}-drain"

  alb_subnet_ids = length(var.alb_subnet_ids) > 0 ? var.alb_subnet_ids : var.subnet_ids
  https          = var.certificate_arn != ""

  blocked_cidrs = var.container_blocked_cidrs != null ? var.container_blocked_cidrs : ["169.254.169.254/32", data.aws_vpc.this.cidr_block]

  # Seconds the termination hook allows: ALB deregistration, then the node's
  # drain and the removal of its containers, with a margin.
  hook_timeout = var.deregistration_delay + var.shutdown_timeout + 120

  parameter_names = {
    mongo_uri   = "${local.ssm_prefix}/mongo-uri"
    secrets_key = "${local.ssm_prefix}/secrets-key"
    admin_token = "${local.ssm_prefix}/admin-token"
  }

  binary_s3 = var.wharf_binary_s3_uri != "" ? regex("^s3://([^/]+)/(.+)$", var.wharf_binary_s3_uri) : []
}

check "one_binary_source" {
  assert {
    condition     = (var.wharf_binary_url == "") != (var.wharf_binary_s3_uri == "")
    error_message = "Set exactly one of wharf_binary_url and wharf_binary_s3_uri."
  }
}
