import GuestAgent

// PID 1 in the guest, or a plain process with --listen. All logic lives in GuestAgent.
AgentMain.run(arguments: Array(CommandLine.arguments.dropFirst()))
