"""Live integrations with training frameworks (``rldk.integrations.trl.RldkCallback``).

Each integration is imported on its own, so ``import rldk.integrations`` pulls in
no framework.
"""
