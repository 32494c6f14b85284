"""Log watching: filters that turn log lines into failures of a host (fail2ban's filters, with
``<HOST>``), jails that count them, and the followers that read the logs."""
