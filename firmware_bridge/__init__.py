"""ecgedge.firmware_bridge"""
