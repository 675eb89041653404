import Shim

// containerd's runtime v2 shim for cocoon (runtime_type io.containerd.cocoon.v2). All logic lives in Shim.
ShimMain.run(arguments: Array(CommandLine.arguments.dropFirst()))
