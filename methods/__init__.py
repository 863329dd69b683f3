"""Proposed methods: CroMo-Mixup."""
