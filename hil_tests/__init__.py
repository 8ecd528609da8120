"""ecgedge.hil_tests"""
