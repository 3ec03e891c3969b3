# First version: CPU/GPU image running the app. A later issue hardens it (CUDA base, non-root user,
# volumes, healthcheck).
FROM python:3.11-slim
WORKDIR /opt/dde
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY dde dde
COPY analysis analysis
COPY app app
COPY assets assets
ENV GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "7860"]
