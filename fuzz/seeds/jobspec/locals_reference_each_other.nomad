locals {
  a = local.b
  b = "${local.a}-x"
}

job "web" {
  group "g" {
    task "t" {
      driver = "podman"
      config {
        image = local.a
      }
    }
  }
}
