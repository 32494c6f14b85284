"""Response: bans of addresses and networks in the OS firewall — timed, escalating for repeat
offenders, restored on start, re-applied when the firewall is flushed behind our back, and
never of the box itself or an operator's SSH client."""
