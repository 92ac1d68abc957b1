"""commands/demo"""
