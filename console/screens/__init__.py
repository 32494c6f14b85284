"""Screens pushed over the main one: alert details, the prompts that guard actions, help."""
