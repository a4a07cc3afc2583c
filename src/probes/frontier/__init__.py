"""The student's learning frontier for teacher-refined data (Selective Reflection-Tuning, arXiv 2402.10110)."""
