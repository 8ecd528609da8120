"""ecgedge.device_sim"""
