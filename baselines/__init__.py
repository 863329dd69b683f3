"""Baseline continual methods: finetune, ER, CaSSLe, CaSSLe+."""
